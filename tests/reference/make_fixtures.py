#!/usr/bin/env python3
"""make_fixtures.py — PyTorch reference values for muxnet's layer parity tests (tests/test_parity.cpp).

Builds small PyTorch modules with fixed (seeded) weights, runs forward and backward on fixed inputs and
saves, per module, one safetensors file in tests/fixtures/ holding:
    param.<name>        the module's parameters (PyTorch state_dict names)
    input.<name>        the inputs (x; mask for the Transformers, 1 = padded key; idx and targets for
                        the embedding + MLP + cross-entropy fixture, whose "output" is the loss)
    output              the forward output
    upstream            the gradient fed to backward (loss = sum(output * upstream))
    grad.input.x        d loss / d x
    grad.param.<name>   d loss / d parameter
Everything is float32 except the mask (int64). The metadata holds the module's configuration.

Run by hand, not in CI (Debian's PyTorch runs on /usr/bin/python3 only):
    apt-get install -y python3-torch
    /usr/bin/python3 tests/reference/make_fixtures.py
The safetensors writer is written out below (a few lines) so no extra package is needed.
"""
import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """The safetensors layout: u64 LE header size, JSON header (padded to 8 bytes), raw LE data."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def record(name, module, inputs, forward, metadata, seed):
    """Runs forward + backward with a fixed upstream gradient and writes the fixture."""
    torch.manual_seed(seed)
    x = inputs["x"].clone().requires_grad_(True)
    out = forward(module, x, inputs)
    upstream = torch.randn(out.shape)
    (out * upstream).sum().backward()
    tensors = {"output": out, "upstream": upstream, "grad.input.x": x.grad}
    for k, v in inputs.items():
        tensors["input." + k] = v
    for pname, p in module.named_parameters():
        tensors["param." + pname] = p
        tensors["grad.param." + pname] = p.grad
    path = os.path.join(OUT, name + ".safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors")


class MLP(nn.Module):
    """muxnet's nn::MLP: Linear layers in a list named "layers", ReLU between them."""

    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = F.relu(x)
        return x


class EmbedMLP(nn.Module):
    """Embedding (with a padding row) -> learned positions -> MLP."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(12, 8, padding_idx=0)
        self.pos = nn.Embedding(5, 8)
        self.mlp = MLP([8, 16, 5])

    def forward(self, idx):
        return self.mlp(self.embed(idx) + self.pos.weight[: idx.shape[1]])


def record_loss(name, module, inputs, loss_fn, metadata):
    """For modules whose input is integer: output = the scalar loss; gradients of the parameters."""
    loss = loss_fn(module, inputs)
    loss.backward()
    tensors = {"output": loss.detach(), "upstream": torch.ones(())}
    for k, v in inputs.items():
        tensors["input." + k] = v
    for pname, p in module.named_parameters():
        tensors["param." + pname] = p
        tensors["grad.param." + pname] = p.grad
    path = os.path.join(OUT, name + ".safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors")


class LeNet(nn.Module):
    """The LeNet-style CNN of PAPER.md §1.7 with muxnet's nn::LeNet parameter names."""

    def __init__(self, in_channels=1, c1=6, num_classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, c1, 3)
        self.c3 = nn.Conv2d(c1, 16, 4)
        self.c5 = nn.Conv2d(16, 120, 3)
        self.f6 = nn.Linear(120, 84)
        self.ol = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.max_pool2d(torch.tanh(self.c3(x)), 2)
        x = torch.tanh(self.c5(x)).flatten(1)
        return self.ol(torch.tanh(self.f6(x)))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)

    torch.manual_seed(1)
    lin = nn.Linear(5, 3)
    record("linear", lin, {"x": torch.randn(4, 5)}, lambda m, x, i: m(x), {"in": 5, "out": 3}, 11)

    torch.manual_seed(2)
    ln = nn.LayerNorm(6, eps=1e-5)
    with torch.no_grad():  # non-trivial affine parameters
        ln.weight.copy_(torch.randn(6))
        ln.bias.copy_(torch.randn(6))
    record("layernorm", ln, {"x": 3.0 * torch.randn(3, 6) + 1.0}, lambda m, x, i: m(x), {"dim": 6, "eps": 1e-5}, 12)

    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=False, layer_norm_eps=1e-5)
    enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    enc.train()  # dropout is 0; training mode keeps PyTorch off its inference fast path
    mask = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.int64)  # 1 = padded key
    record("transformer", enc, {"x": torch.randn(2, 5, 16), "mask": mask},
           lambda m, x, i: m(x, src_key_padding_mask=i["mask"].bool()),
           {"d_model": 16, "heads": 4, "dim_feedforward": 32, "layers": 2, "activation": "gelu",
            "norm_first": False}, 13)

    torch.manual_seed(5)
    pre = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=True, layer_norm_eps=1e-5)
    enc_pre = nn.TransformerEncoder(pre, num_layers=1, norm=nn.LayerNorm(16), enable_nested_tensor=False)
    enc_pre.train()
    record("transformer_preln", enc_pre, {"x": torch.randn(2, 5, 16), "mask": mask},
           lambda m, x, i: m(x, src_key_padding_mask=i["mask"].bool()),
           {"d_model": 16, "heads": 4, "dim_feedforward": 32, "layers": 1, "activation": "gelu",
            "norm_first": True, "final_norm": True}, 15)

    torch.manual_seed(6)
    em = EmbedMLP()
    idx = torch.tensor([[3, 0, 7, 11, 2], [5, 5, 0, 1, 9]], dtype=torch.int64)  # 0 = padding row
    targets = torch.tensor([[1, -100, 4, 0, 2], [3, 3, -100, 1, 4]], dtype=torch.int64)  # -100 = ignored
    record_loss("embed_mlp_ce", em, {"idx": idx, "targets": targets},
                lambda m, i: F.cross_entropy(m(i["idx"]).reshape(-1, 5), i["targets"].reshape(-1), ignore_index=-100),
                {"vocab": 12, "dim": 8, "padding_idx": 0, "max_len": 5, "mlp": "8,16,5", "activation": "relu"})

    torch.manual_seed(4)
    net = LeNet()
    record("lenet", net, {"x": torch.rand(2, 1, 20, 20)}, lambda m, x, i: m(x),
           {"in_channels": 1, "c1": 6, "num_classes": 10}, 14)


if __name__ == "__main__":
    main()
