"""GET /v1/models (OpenAI clients read data[].id)."""
from __future__ import annotations

from fastapi import APIRouter

from app.dependencies import StoreDep
from app.schemas import ModelCard, ModelList

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(store: StoreDep) -> ModelList:
    cards = []
    for model_id, info in store.models.items():
        cards.append(
            ModelCard(
                id=model_id,
                type=info.public_type,
                level=info.level,
                default=store.defaults.get(info.public_type) == model_id,
                revision=info.revision,
                parameters=info.parameters,
                metrics=info.metrics,
            )
        )
    return ModelList(data=cards)
