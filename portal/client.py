"""Acting through the portal over HTTP, as a person does in a browser: for the demonstration's
simulated committees and units, and for tests.

    with PortalClient.open(link) as p:      # the link from the e-mail
        path = p.download(folder)          # the handoff's document
        p.upload(filled)                   # the filled-in return (raises PortalError with the page's message)
        p.agree("§ 12 Godkänt")            # or p.dispute("...")
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_REFRESH = re.compile(r'http-equiv="refresh" content="0;url=([^"]+)"')
_DOC_LINK = re.compile(r'href="(/kvittens/\d+/dokument/\d+)"')
_NOTICE = re.compile(r'<div class="notice (?:error|ok)"[^>]*>\s*<p>(.*?)</p>', re.S)


class PortalError(Exception):
    """The portal refused: the message is what the page says, in Swedish."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PortalClient:
    def __init__(self, client: httpx.Client, page_path: str) -> None:
        self.http, self.path = client, page_path
        self.html = ""

    @classmethod
    def open(cls, link: str, *, timeout: float = 30.0, client: httpx.Client | None = None) -> PortalClient:
        """Open the link from a message: the portal stores its token in a cookie and sends the
        browser on to the handoff page (no token in that URL). `client`: an httpx client to use
        (its cookies are the browser's), e.g. a test client; by default a new one for the link's host."""
        parts = urlsplit(link)
        if client is None:
            base = f"{parts.scheme}://{parts.netloc}"
            client = httpx.Client(base_url=base, timeout=timeout, follow_redirects=False)
        first = client.get(parts.path)
        if first.status_code != 200:
            client.close()
            raise PortalError(first.status_code, message_of(first.text))
        m = _REFRESH.search(first.text)
        if m is None:
            client.close()
            raise PortalError(first.status_code, message_of(first.text))
        self = cls(client, html.unescape(m.group(1)))
        self.reload()
        return self

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @property
    def receipt_id(self) -> int:
        return int(self.path.rstrip("/").rsplit("/", 1)[-1])

    def reload(self) -> str:
        r = self.http.get(self.path)
        if r.status_code != 200:
            raise PortalError(r.status_code, message_of(r.text))
        self.html = r.text
        return self.html

    def _csrf(self) -> str:
        m = _CSRF.search(self.html)
        if m is None:
            raise PortalError(0, "sidan har inget formulär")
        return m.group(1)

    def documents(self) -> list[str]:
        return list(dict.fromkeys(_DOC_LINK.findall(self.html)))

    def download(self, folder: Path) -> list[Path]:
        """Every document of the handoff, saved under `folder` by the names the portal gives."""
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for href in self.documents():
            r = self.http.get(href)
            if r.status_code != 200:
                raise PortalError(r.status_code, message_of(r.text))
            m = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', r.headers.get("content-disposition", ""))
            name = Path(httpx.URL("/" + (m.group(1) if m else href.rsplit("/", 1)[-1])).path).name
            path = folder / unquote(name)
            path.write_bytes(r.content)
            out.append(path)
        return out

    def _post(self, action: str, data: dict[str, str], files: Any = None) -> str:
        r = self.http.post(
            f"{self.path}/{action}", data={"csrf": self._csrf(), **data}, files=files, follow_redirects=False
        )
        if r.status_code == 303:
            self.path = r.headers["location"].split("?")[0]
            page = self.http.get(r.headers["location"])
            self.html = page.text
            return message_of(page.text)
        self.html = r.text
        raise PortalError(r.status_code, message_of(r.text))

    def upload(self, path: Path) -> str:
        """Hand in a filled-in return; the page's confirmation, or PortalError with its refusal."""
        with path.open("rb") as fh:
            return self._post("retur", {}, files={"fil": (path.name, fh)})

    def agree(self, decision: str = "") -> str:
        return self._post("godkann", {"kommentar": decision})

    def dispute(self, comment: str) -> str:
        return self._post("bestrid", {"kommentar": comment})


def message_of(page: str) -> str:
    """The page's notice (or heading) as plain text."""
    m = _NOTICE.search(page)
    if m is None:
        m = re.search(r"<h1>(.*?)</h1>", page, re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).split()) if m else ""


def links_in(text: str) -> list[str]:
    """The portal links in a message's text."""
    return re.findall(r"https?://[^\s<>\"]+/l/[A-Za-z0-9_.-]+", text)
