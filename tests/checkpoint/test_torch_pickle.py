"""Reading/writing torch.save files without torch and without executing pickle code."""

from __future__ import annotations

import io
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest
import torch

from paras2s_jax.checkpoint.torch_pickle import TorchFileError, read_torch_file, save_torch_file


def _np(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def test_reads_what_torch_saves(tmp_path):
    base = torch.randn(4, 6)
    tensors = {
        "f32": base, "transposed": base.t(), "column": base[:, 3], "offset": base[2:],
        "bf16": torch.randn(3, 2).bfloat16(), "f16": torch.randn(5).half(),
        "i64": torch.arange(7), "bool": torch.tensor([True, False]),
        "param": torch.nn.Parameter(torch.ones(2, 2)), "scalar": torch.tensor(3.5),
    }
    payload = {"state_dict": tensors, "optimizer": {"step": 5, "betas": (0.9, 0.99)}}
    torch.save(payload, tmp_path / "model.pt")
    loaded = read_torch_file(tmp_path / "model.pt")
    assert loaded["optimizer"] == {"step": 5, "betas": (0.9, 0.99)}
    for key, t in tensors.items():
        got = loaded["state_dict"][key]
        assert got.shape == tuple(t.shape) and got.dtype == _np(t.detach()).dtype, key
        np.testing.assert_array_equal(got.numpy(), _np(t.detach().contiguous()), err_msg=key)


def test_written_files_load_in_torch(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4),
              "b": np.linspace(-1, 1, 5).astype(ml_dtypes.bfloat16),
              "c": np.arange(10, dtype=np.float64)[::3]}
    save_torch_file(tmp_path / "w.pt", {"generator": arrays, "steps": 7})
    loaded = torch.load(tmp_path / "w.pt", weights_only=True)
    assert loaded["steps"] == 7
    for key, a in arrays.items():
        np.testing.assert_array_equal(_np(loaded["generator"][key]), a)
        np.testing.assert_array_equal(read_torch_file(tmp_path / "w.pt")["generator"][key]
                                      .numpy(), a)


class _Exploit:
    def __reduce__(self):
        import os
        return os.system, ("touch should_not_exist",)


def test_refuses_code_in_pickles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    pickle.dump({"state_dict": _Exploit()}, buf, protocol=2)
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", buf.getvalue())
    with pytest.raises(TorchFileError, match=r"evil\.pt: refusing to load global posix\.system"):
        read_torch_file(tmp_path / "evil.pt")
    assert not (tmp_path / "should_not_exist").exists()


def test_bad_files_give_clear_errors(tmp_path):
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(TorchFileError, match="legacy.pt: not a torch.save zip"):
        read_torch_file(tmp_path / "legacy.pt")
    torch.save({"w": torch.randn(100)}, tmp_path / "t.pt")
    with zipfile.ZipFile(tmp_path / "t.pt") as src, \
            zipfile.ZipFile(tmp_path / "cut.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:40] if info.filename.endswith("data/0") else data)
    with pytest.raises(TorchFileError, match="truncated"):
        read_torch_file(tmp_path / "cut.pt")["w"].numpy()
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read_torch_file(tmp_path / "nope.pt")
