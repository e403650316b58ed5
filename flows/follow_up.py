"""Phase flow: follow-up, one run per occasion (monthly check, forecast, interim report, annual report)."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow

from flows.phase_runner import run_phase

DESCRIPTION = (
    "Uppföljning (under planåret): varje enhet lämnar utfall, prognos och bedömning uppåt i kedjan "
    "enhet → förvaltning → nämnd → styrelse → fullmäktige; varje mottagare kvitterar. "
    "Ange tillfälle, t.ex. delar-2028-08-31 (tomt = årsredovisningen)."
)


@flow(name="follow-up", description=DESCRIPTION, persist_result=True, validate_parameters=True)
def follow_up(
    year: int,
    occasion: str | None = None,
    as_of: date | None = None,
    override: bool = False,
    reason: str = "",
    wait: bool = True,
    config: str | None = None,
    actor: str = "ekonomistaben",
    override_levels: list[str] | None = None,
) -> dict[str, Any]:
    """Run one follow-up occasion of plan year `year`.

    Args:
        year: Planåret som följs upp.
        occasion: Uppföljningstillfälle, t.ex. 'delar-2028-08-31'; tomt = årsredovisningen.
        as_of: Simulerat datum (demonstration); tomt = i dag.
        override: Starta trots att föregående fas saknar kvittenser (kräver motivering).
        reason: Motivering till override; sparas i granskningsloggen.
        wait: Vänta (pausa körningen) tills alla kvittenser är signerade.
        config: Konfigurationsfil eller 'region'/'municipality'; tomt = standard.
        actor: Vem som startar fasen (granskningsloggen).
        override_levels: Nivåer (enhets-id) som får lämna sin nivårapport uppåt trots att underlag
            saknas från nivån under; motiveringen i reason sparas i granskningsloggen.
    """
    return run_phase(
        "follow_up",
        year=year,
        occasion=occasion,
        as_of=as_of,
        override=override,
        reason=reason,
        wait=wait,
        config=config,
        actor=actor,
        override_levels=override_levels,
    )
