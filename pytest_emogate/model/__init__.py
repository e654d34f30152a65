"""The Emotion-LLaMA model (MiniGPT-v2: EVA-ViT-g, projections, Llama-2 with LoRA), re-implemented from the spec.

Importing this package imports torch; transformers and peft are imported by the functions that load a model.
"""

from __future__ import annotations

from pytest_emogate.model.checkpoint import feature_dims, read_stage_two, read_vit
from pytest_emogate.model.emotion_llama import EmotionLlama, ModelFiles, check_model_files, load_emotion_llama
from pytest_emogate.model.prompt import PromptIds, answer_text, prompt_text, tokenize_prompt, tokenize_prompts

__all__ = [
    "EmotionLlama",
    "ModelFiles",
    "PromptIds",
    "answer_text",
    "check_model_files",
    "feature_dims",
    "load_emotion_llama",
    "prompt_text",
    "read_stage_two",
    "read_vit",
    "tokenize_prompt",
    "tokenize_prompts",
]
