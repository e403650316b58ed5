"""Phase flow: regional plan."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow

from flows.phase_runner import run_phase

DESCRIPTION = (
    "Plan och budget (apr–jun): beredning och beslut i ordningen arbetsutskott → styrelse → fullmäktige. "
    "Förslaget går till nästa instans först när den förra har kvitterat (kvittensen är beslutet, "
    'kommentaren beslutstexten, t.ex. "§ 45 Föreslår …"); den beslutade planen med beslutsgången '
    "skickas till nämnderna när fullmäktige har beslutat, och nämnderna kvitterar."
)


@flow(name="regional-plan", description=DESCRIPTION, persist_result=True, validate_parameters=True)
def regional_plan(
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
        "regional_plan", year=year, as_of=as_of, override=override, reason=reason, wait=wait, config=config, actor=actor
    )
