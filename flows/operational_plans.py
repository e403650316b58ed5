"""Phase flow: operational plans."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow

from flows.phase_runner import run_phase

DESCRIPTION = (
    "Verksamhetsplaner (feb–sep): varje nämnd beslutar sin verksamhetsplan med mål, åtaganden, "
    "indikatorer och internkontrollplan; förvaltningarna kvitterar."
)


@flow(name="operational-plans", description=DESCRIPTION, persist_result=True, validate_parameters=True)
def operational_plans(
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
        "operational_plans",
        year=year,
        as_of=as_of,
        override=override,
        reason=reason,
        wait=wait,
        config=config,
        actor=actor,
    )
