"""The sign-receipt deployment: the Prefect UI's parameter form signs or disputes a receipt."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger

from config.loader import load_config
from tasks.receipts import SignRequest, dispute, occasion_of, sign
from tasks.waiting import resume_if_ready

DESCRIPTION = (
    "Signera eller bestrid en kvittens. Ange kvittensens id, din signatärs-id och engångskoden från "
    "e-postmeddelandet som levererade dokumentet. En operatör kan signera för en enhets räkning "
    "endast med en skriftlig motivering (sparas i granskningsloggen)."
)


@flow(name="sign-receipt", description=DESCRIPTION, validate_parameters=True)
def sign_receipt(
    receipt_id: int,
    decision: Literal["agree", "dispute"] = "agree",
    signatory: str = "",
    code: str = "",
    comment: str = "",
    operator_reason: str = "",
    actor: str = "",
    config: str | None = None,
) -> dict[str, Any]:
    """Sign (agree) or dispute a receipt; the last signature resumes the waiting phase.

    Args:
        receipt_id: Kvittensens id.
        decision: agree = överens, dispute = bestrid (kräver kommentar).
        signatory: Signatärens id i den mottagande enheten.
        code: Engångskoden från e-postmeddelandet.
        comment: Kommentar (krävs vid bestridande).
        operator_reason: Fylls bara i av operatör som signerar för enhetens räkning.
        actor: Vem som signerar (operatörens namn).
        config: Konfigurationsfil eller 'region'/'municipality'; tomt = standard.
    """
    cfg = load_config(config)
    req = SignRequest(
        receipt_id=receipt_id,
        signatory=signatory or None,
        code=code or None,
        comment=comment or None,
        actor=actor or signatory or "okänd",
        operator_reason=operator_reason if operator_reason else None,
    )
    receipt = dispute(cfg, req) if decision == "dispute" else sign(cfg, req)
    # Never fails a run whose signature is committed: a run resumed by someone else first, crashed or
    # unknown to this Prefect server is handled there (restarted from its deployment, or audited).
    # A follow-up receipt resumes the run of its own occasion.
    resumed = resume_if_ready(
        receipt.cycle_id, receipt.phase, req.actor, occasion=occasion_of(receipt.topic), config=config
    )
    get_run_logger().info("Receipt %s is now %s; phase resumed: %s", receipt.id, receipt.state, resumed)
    return {"receipt_id": receipt.id, "state": str(receipt.state), "phase_resumed": resumed}
