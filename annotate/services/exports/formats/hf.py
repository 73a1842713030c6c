"""A Hugging Face ``datasets`` folder, as ``DatasetDict.save_to_disk`` writes it: ``datasets.load_from_disk``
opens it without conversion."""

from __future__ import annotations

import json
from typing import IO, Any

import pyarrow as pa

from annotate.services.exports.formats import ExportFormat, Finished, register

SHARD = "data-00000-of-00001.arrow"


def hf_feature(data_type: pa.DataType) -> Any:
    """The ``datasets`` feature (as saved in dataset_info.json) of an Arrow type used in exports."""
    if pa.types.is_list(data_type):
        return {"feature": hf_feature(data_type.value_type), "_type": "List"}
    if pa.types.is_struct(data_type):
        return {
            data_type.field(index).name: hf_feature(data_type.field(index).type)
            for index in range(data_type.num_fields)
        }
    names = {pa.string(): "string", pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool"}
    return {"dtype": names[data_type], "_type": "Value"}


def hf_features(schema: pa.Schema) -> dict[str, Any]:
    return {item.name: hf_feature(item.type) for item in schema}


class ArrowStreamSink:
    """The file ``datasets.Dataset.save_to_disk`` writes: an Arrow IPC stream whose schema carries the
    ``datasets`` features."""

    def __init__(self, file: IO[bytes], schema: pa.Schema) -> None:
        self.schema = schema.with_metadata(
            {"huggingface": json.dumps({"info": {"features": hf_features(schema)}})}
        )
        self.writer = pa.ipc.new_stream(file, self.schema)

    def write(self, lines: list[bytes], table: pa.Table | None) -> None:
        self.writer.write_table(table.replace_schema_metadata(self.schema.metadata))

    def close(self) -> None:
        self.writer.close()


def finish(done: Finished) -> None:
    """Each split's dataset_info.json and state.json, and the folder's dataset_dict.json."""
    for split in done.splits:
        folder = f"hf/{split}/"
        info = {
            "citation": "",
            "description": done.description,
            "features": hf_features(done.schema),
            "homepage": "",
            "license": done.license,
        }
        state = {
            "_data_files": [{"filename": SHARD}],
            "_fingerprint": done.folder.sha256(folder + SHARD)[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": split,
        }
        done.folder.write_json(folder + "dataset_info.json", info)
        done.folder.write_json(folder + "state.json", state)
    done.folder.write_json("hf/dataset_dict.json", {"splits": done.splits})


register(
    ExportFormat(
        name="hf",
        label="Hugging Face datasets folder",
        extension="arrow",
        sink=ArrowStreamSink,
        file="hf/{split}/" + SHARD,
        order=40,
        finish=finish,
        card="hf/README.md",
        downloadable=False,
    )
)
