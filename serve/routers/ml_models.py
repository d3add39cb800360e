"""Every model of the tenant: one per equipment and the failure model shared by each equipment type."""

from typing import Annotated, Any

from fastapi import APIRouter

from schema.api import Envelope, ErrorEnvelope
from schema.predictions import ModelPublic
from serve import predictions
from serve.auth import Principal
from serve.deps import ServicesDep, require
from serve.listing import list_params, page_envelope, sparse_list
from store.listing import ListQuery
from store.predictions import ML_MODELS

router = APIRouter(prefix="/v1/ml", tags=["models"])
# List pages, parametrised at module level (see serve.listing.sparse_list).
MODEL_PAGE = Envelope.__class_getitem__(sparse_list(ModelPublic))


@router.get("/models", response_model=MODEL_PAGE, response_model_exclude_unset=True,
            responses={422: {"model": ErrorEnvelope}})
async def list_models(services: ServicesDep, principal: Annotated[Principal, require("models:read")],
                      q: Annotated[ListQuery, list_params(ML_MODELS)]) -> dict[str, Any]:
    """Version, samples seen, when it last learned and size in bytes of each model (checkpoints of equipment
    models are written every 30 s or 5,000 readings). Filter e.g. `?kind=equipment_type`, sort `-size_bytes`."""
    rows, total = await predictions.list_models(services, principal.tenant_id, q)
    return page_envelope(rows, total, q)
