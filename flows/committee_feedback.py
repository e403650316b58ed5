"""Phase flow: committee feedback."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow

from flows.phase_runner import run_phase

DESCRIPTION = (
    "Nämndernas återkoppling (mar–apr): varje nämnd får återkopplingsmallen med sex rubriker och "
    "risk- och känslighetsanalys; styrelsen kvitterar återkopplingen."
)


@flow(name="committee-feedback", description=DESCRIPTION, persist_result=True, validate_parameters=True)
def committee_feedback(
    year: int,
    as_of: date | None = None,
    override: bool = False,
    reason: str = "",
    wait: bool = True,
    config: str | None = None,
    actor: str = "ekonomistaben",
) -> dict[str, Any]:
    """Run the phase for plan year `year`.

    Args:
        year: Planåret (t.ex. 2028).
        as_of: Simulerat datum (demonstration); tomt = i dag.
        override: Starta trots att föregående fas saknar kvittenser (kräver motivering).
        reason: Motivering till override; sparas i granskningsloggen.
        wait: Vänta (pausa körningen) tills alla kvittenser är signerade.
        config: Konfigurationsfil eller 'region'/'municipality'; tomt = standard.
        actor: Vem som startar fasen (granskningsloggen).
    """
    return run_phase(
        "committee_feedback",
        year=year,
        as_of=as_of,
        override=override,
        reason=reason,
        wait=wait,
        config=config,
        actor=actor,
    )
