"""GET /v1/models (OpenAI clients read data[].id)."""
from __future__ import annotations

from fastapi import APIRouter

from app.dependencies import StoreDep
from app.schemas import ModelCard, ModelList

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(store: StoreDep) -> ModelList:
    cards = []
    for model_id, loaded in store.models.items():
        public = store.public_type(loaded)
        cards.append(
            ModelCard(
                id=model_id,
                type=public,
                level=getattr(loaded, "level", None),
                default=store.defaults.get(public) == model_id,
                revision=loaded.revision,
                parameters=loaded.parameters,
                metrics=loaded.metrics,
            )
        )
    return ModelList(data=cards)
