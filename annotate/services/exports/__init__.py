"""Dataset exports: judgments in, preference datasets in TRL's format out.

One service serves ``manage.py export_dataset``, the API and the exports page. An export is an ``Export`` row
(its policy with defaults filled in, formats, status, counts and files with sha256) and a folder
``exports/<id>/`` in the exports store (``palate.storage``). The package, one concern per module:

- ``policy``: what an export contains, validated against the project;
- ``jobs``: the export job (create, claim and run, progress) on the shared lifecycle of ``palate.jobs``;
- ``build``: the two passes that make the files, inside one consistent read (``labels`` then ``rows``);
- ``writer`` and ``formats``: the files, one module per format in the registry (``formats/``);
- ``card``: the dataset card; ``downloads``: reading a finished export back.
"""

from annotate.services.exports.downloads import (
    FILE_MEDIA_TYPE,
    ExportFile,
    export_file,
    export_hf_tar,
    export_split_pair_ids,
)
from annotate.services.exports.formats import EXPORT_FORMATS, FORMATS, ExportFormat, register
from annotate.services.exports.jobs import (
    EXPORT_JOBS,
    export_create,
    export_folder,
    export_progress,
    export_run,
)
from annotate.services.exports.policy import (
    DEFAULT_COLUMNS,
    DROP_OR_KEEP,
    OPTIONAL_COLUMNS,
    POLICY_KEYS,
    SPLITS,
    ExportFailed,
    ExportPolicy,
    export_formats_parse,
    export_policy_parse,
)

__all__ = [
    "DEFAULT_COLUMNS",
    "DROP_OR_KEEP",
    "EXPORT_FORMATS",
    "EXPORT_JOBS",
    "FILE_MEDIA_TYPE",
    "FORMATS",
    "OPTIONAL_COLUMNS",
    "POLICY_KEYS",
    "SPLITS",
    "ExportFailed",
    "ExportFile",
    "ExportFormat",
    "ExportPolicy",
    "export_create",
    "export_file",
    "export_folder",
    "export_formats_parse",
    "export_hf_tar",
    "export_policy_parse",
    "export_progress",
    "export_run",
    "export_split_pair_ids",
    "register",
]
