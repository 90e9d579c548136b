"""Model resolution over the Hugging Face Hub, like diffusers' ``from_pretrained``: a validated
registry (:mod:`.registry`), where things live (:mod:`.env`), download + verify (:mod:`.download`),
cached snapshots (:mod:`.snapshot`), and resolve / list / remove (:mod:`.cache`).

Safety: weights are safetensors only. File types that can run code when loaded (pickle formats
such as ``.bin``/``.pt``/``.ckpt``/``.pkl``, Python and native code) are never fetched, and a file
name that could escape the model folder is refused, both in the registry and in a Hub listing,
before anything is downloaded. After a download every file with a known sha256 (registry pin,
else the Hub's LFS sha256) is hashed; a mismatch deletes the file and fails.

Environment handling: huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and
``HF_HUB_OFFLINE`` once, at import; so every call here reads the environment at call time and
passes ``endpoint=``, ``cache_dir=`` and ``local_files_only=`` explicitly. No request is made
offline. Errors are :class:`lingen_model.errors.InputError` (bad name, 404: exit 2) or
:class:`lingen_model.errors.OperationError` (network, corrupt download, not cached: exit 1).
"""
from lingen_model.hub.cache import (
    RemovePlan,
    installed_models,
    plan_remove,
    remove,
    resolve_model,
)
from lingen_model.hub.download import (
    download,
    plan_download,
    resolve_target,
    verify_files,
)
from lingen_model.hub.env import (
    bundled_dir,
    hub_cache_dir,
    hub_endpoint,
    is_offline,
    lingen_home,
)
from lingen_model.hub.registry import (
    DownloadPlan,
    DownloadResult,
    FileSpec,
    Layout,
    ModelEntry,
    PlannedFile,
    RegistryError,
    RepoSpec,
    check_layout,
    is_unsafe_type,
    load_registry,
    memory_tiers,
    parse_repo_spec,
    unsafe_path_reason,
)

__all__ = [
    "DownloadPlan", "DownloadResult", "FileSpec", "Layout", "ModelEntry", "PlannedFile", "RegistryError",
    "RemovePlan", "RepoSpec", "bundled_dir", "check_layout", "download", "hub_cache_dir", "hub_endpoint",
    "installed_models", "is_offline", "is_unsafe_type", "lingen_home", "load_registry", "memory_tiers",
    "parse_repo_spec", "plan_download", "plan_remove", "remove", "resolve_model", "resolve_target",
    "unsafe_path_reason", "verify_files",
]
