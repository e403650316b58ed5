"""`styrkedja portal`: the portal's web server (uvicorn), and `styrkedja portal add-operator`.

`register(app)` adds the group to the main Typer app (flows/cli.py)."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Configuration file, or 'region' / 'municipality' for the samples."),
]


def register(app: typer.Typer) -> None:
    portal_app = typer.Typer(
        help="The receipt portal (kvittensportalen): where committees and units act from their e-mail's link.",
        invoke_without_command=True,
    )
    app.add_typer(portal_app, name="portal")

    @portal_app.callback()
    def portal(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8400,
        workers: Annotated[int, typer.Option(min=1, help="Worker processes (all against the same database).")] = 1,
        proxy_headers: Annotated[
            bool, typer.Option(help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a proxy).")
        ] = False,
        forwarded_allow_ips: Annotated[str, typer.Option(help="Proxies trusted for forwarded headers.")] = "127.0.0.1",
        config: ConfigOpt = None,
    ) -> None:
        """Serve the portal with uvicorn. Links in messages use STYRKEDJA_PORTAL_URL: set it to the
        address people reach this server at."""
        if ctx.invoked_subcommand is not None:
            return
        from flows.cli import _db, user_errors

        @user_errors
        def serve() -> None:
            from config.loader import load_config
            from portal.serve import serve as run

            if config:
                os.environ["STYRKEDJA_CONFIG"] = config
            load_config(config)  # a bad configuration is one line now, not a traceback per worker
            _db()
            run(host, port, workers, proxy_headers, forwarded_allow_ips)

        serve()

    @portal_app.command("add-operator")
    def add_operator(
        username: Annotated[str, typer.Argument(help="Login name (a–z, 0–9, . _ -).")],
        name: Annotated[str, typer.Option(help="The operator's name, as the audit log shows it.")] = "",
    ) -> None:
        """Create an operator account for the portal's overview pages (or set its password).
        The password is read from STYRKEDJA_OPERATOR_PASSWORD or asked for; only its argon2 hash is kept."""
        from flows.cli import _db, out, user_errors

        @user_errors
        def run() -> None:
            from portal.operators import add_operator as add

            password = os.environ.get("STYRKEDJA_OPERATOR_PASSWORD") or getpass.getpass("Lösenord: ")
            _db()
            created = add(username, name or username, password)
            out.print(f"operator {username}: {'created' if created else 'password updated'}")

        run()
