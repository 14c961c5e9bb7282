"""Service settings: `LIAISON_*` environment variables over the data directory's `settings.toml`
over defaults, each setting with its meaning and an example (docs/operations.md is generated
from them); the database `init` recorded (`database.toml`); one-line errors that name the
setting and never echo a secret.

    load_settings(data_dir, **overrides) -> Settings      raises SettingsError

One module per part: `_base` (the error, names, masking), `_settings` (the fields),
`_record` (init's database record), `_load` (reading and explaining), `_startup` (refusals to
start: `StartupError`, the log signing key, a database failure in one line).
"""

from ._base import ENV_PREFIX, RECORD_FILE, SettingsError, Source, describe_source, env_name, masked_url
from ._load import expected_form, is_secret, load_settings
from ._record import DatabaseRecord
from ._settings import Settings
from ._startup import StartupError, describe_db_error, load_log_signer

__all__ = [
    "ENV_PREFIX",
    "RECORD_FILE",
    "DatabaseRecord",
    "Settings",
    "SettingsError",
    "Source",
    "StartupError",
    "describe_db_error",
    "describe_source",
    "env_name",
    "expected_form",
    "is_secret",
    "load_log_signer",
    "load_settings",
    "masked_url",
]
