"""What the models think of one equipment, resetting its model, and backtesting rules on its stored history."""

from typing import Annotated, Any

from fastapi import APIRouter, Path

from schema.api import Envelope, ErrorEnvelope
from schema.ids import EQUIPMENT_ID_PATTERN
from schema.predictions import BacktestRequest, BacktestResult, ModelResetAccepted, PredictionsPublic
from serve import predictions
from serve.auth import Principal
from serve.deps import Audit, ServicesDep, require

router = APIRouter(prefix="/v1/equipment", tags=["models"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}}
Reader = Annotated[Principal, require("models:read")]
Writer = Annotated[Principal, require("models:write")]
EquipmentId = Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN, description="the equipment's id")]


@router.get("/{equipment_id}/predictions", response_model=Envelope[PredictionsPublic], responses=ERRORS)
async def get_predictions(equipment_id: EquipmentId, services: ServicesDep, principal: Reader,
                          ) -> Envelope[PredictionsPublic]:
    """Per sensor its current anomaly score, normal and drift state; the probability of a failure within the
    horizon; the model's version, samples seen and when it last learned. As of the model's last checkpoint
    (seconds to a minute behind the readings)."""
    data = await predictions.get_predictions(services, principal.tenant_id, equipment_id)
    return Envelope(data=PredictionsPublic(**data))


@router.post("/{equipment_id}/model/reset", status_code=202, response_model=Envelope[ModelResetAccepted],
             responses=ERRORS)
async def reset_model(equipment_id: EquipmentId, services: ServicesDep, principal: Writer, audit: Audit,
                      ) -> Envelope[ModelResetAccepted]:
    """Drop what the models learned of this equipment (after a sensor swap or an overhaul): a fresh model warms
    up from its next reading. Its rules, open alerts and failure reports are kept. Audited."""
    return Envelope(data=ModelResetAccepted(**await predictions.reset_model(services, audit, equipment_id)))


@router.post("/{equipment_id}/backtest", response_model=Envelope[BacktestResult], response_model_by_alias=True,
             responses=ERRORS)
async def backtest(equipment_id: EquipmentId, body: BacktestRequest, services: ServicesDep, principal: Reader,
                   ) -> Envelope[BacktestResult]:
    """Replay the stored readings of `[from, to)` (at most 31 days, 50,000 snapshots) through fresh models, one
    snapshot at a time with no look-ahead, exactly as the actors run them, with the type's default rules, the
    tenant's rules and `rules` on top: what would each rule have raised? Writes nothing.

    Permission `models:read`: it evaluates the models on data the caller may already read, and changes
    nothing (trying a rule before enabling it is what `rules:write` holders do, but viewers may look too)."""
    return Envelope(data=BacktestResult(**await predictions.backtest(services, principal.tenant_id, equipment_id,
                                                                     body)))
