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


def record(name, module, inputs, forward, metadata, seed, skip_grads=(), skip_params=()):
    """Runs forward + backward with a fixed upstream gradient and writes the fixture. Gradients of
    parameters whose names start with one of skip_grads, and the values of those starting with one of
    skip_params, are left out (to keep the files small when another fixture already holds them)."""
    torch.manual_seed(seed)
    x = inputs["x"].clone().requires_grad_(True)
    out = forward(module, x, inputs)
    upstream = torch.randn(out.shape)
    (out * upstream).sum().backward()
    tensors = {"output": out, "upstream": upstream, "grad.input.x": x.grad}
    for k, v in inputs.items():
        tensors["input." + k] = v
    for pname, p in module.named_parameters():
        if not pname.startswith(tuple(skip_params)):
            tensors["param." + pname] = p
        if not pname.startswith(tuple(skip_grads)):
            tensors["grad.param." + pname] = p.grad
    for bname, b in module.named_buffers():
        tensors["buffer." + bname] = b
    path = os.path.join(OUT, name + ".safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors")


class TMux(nn.Module):
    """muxnet's mux::TMux (mux/tmux.h) with index demux, Gaussian-Hadamard keys and a sequence task:
    prefix [p_0 .. p_{N-1}, CLS] + ids, e = LN(word + pos), x = mean_i e_i * v_i, x = LN(x + pos),
    h = post-LN encoder; task z_i = LN(gelu(W1 [h_i ; h_N])), logits = Wo gelu(W2 z + b2) + bo;
    retrieval r = Wv LN(gelu(W [h_k ; h_t])) + bv. Same parameter names as the C++ model."""

    def __init__(self, vocab, L, n, d, heads, ff, layers, classes, key_norm):
        super().__init__()
        self.vocab, self.L, self.n = vocab, L, n
        self.word = nn.Embedding(vocab + 2 + n, d)
        self.pos = nn.Embedding(L + n + 1, d)
        self.emb_norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.demux = nn.Module()
        self.demux.dense_in, self.demux.norm = nn.Linear(2 * d, d), nn.LayerNorm(d)
        self.demux.dense, self.demux.out_proj = nn.Linear(d, d), nn.Linear(d, classes)
        self.retrieval = nn.Module()
        self.retrieval.dense_in, self.retrieval.norm = nn.Linear(2 * d, d), nn.LayerNorm(d)
        self.retrieval.decoder = nn.Linear(d, vocab)
        g = torch.randn(n, d, dtype=torch.float64)
        self.mux = nn.Module()
        self.mux.register_buffer("instance_embedding", (g / g.norm(dim=1, keepdim=True) * key_norm).float())

    def prefixed(self, ids):
        rows, n = ids.shape[0], self.n
        prefix = torch.full((rows, n + 1), self.vocab, dtype=torch.int64)
        for r in range(rows):
            prefix[r, r % n] = self.vocab + 2 + (r % n)
        prefix[:, n] = self.vocab + 1
        return torch.cat([prefix, ids], dim=1)

    def forward(self, ids, labels, k, task_coeff=0.9, retrieval_coeff=0.1):
        n = self.n
        p = self.prefixed(ids)
        Lp = p.shape[1]
        pos = self.pos.weight[:Lp]
        e = self.emb_norm(self.word(p) + pos)                                  # (B*N, L', d)
        B = e.shape[0] // n
        v = self.mux.instance_embedding                                         # (N, d)
        x = (e.view(B, n, Lp, -1) * v[None, :, None, :]).mean(dim=1)            # (B, L', d)
        h = self.encoder(self.emb_norm(x + pos))                                # (B, L', d)
        d = h.shape[-1]
        hi = h[:, :n].unsqueeze(2)                                              # (B, N, 1, d)
        z = torch.cat([hi, h[:, n].view(B, 1, 1, d).expand(B, n, 1, d)], dim=-1).view(B * n, 2 * d)
        z = self.demux.norm(F.gelu(self.demux.dense_in(z)))
        task = self.demux.out_proj(F.gelu(self.demux.dense(z)))                # (B*N, C)
        hk = torch.gather(h[:, :n], 1, k.unsqueeze(-1).expand(B, Lp, d))        # (B, L', d): h[b, k[b,t]]
        r = self.retrieval.decoder(self.retrieval.norm(F.gelu(self.retrieval.dense_in(torch.cat([hk, h], -1)))))
        target = torch.gather(p.view(B, n, Lp), 1, k.unsqueeze(1)).squeeze(1).clone()  # p[b*N + k, t]
        target[:, : n + 1] = -100
        loss = task_coeff * F.cross_entropy(task, labels) + retrieval_coeff * F.cross_entropy(
            r.reshape(B * Lp, -1), target.reshape(-1), ignore_index=-100)
        return loss, task, r


class CnnMux(nn.Module):
    """muxnet's mux::CnnMux with the gaussian image mux: sum_i conv(x_i, k_i, pad 1) -> LeNet features
    -> N heads tanh(Linear(84, N*84)) -> shared LeNet output layer."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.mux = nn.Module()
        self.mux.register_buffer("kernels", torch.randn(n, 1, 1, 3, 3))
        torch.manual_seed(4)
        self.lenet = LeNet()  # the weights of lenet.safetensors: the C++ test loads them from there
        self.heads = nn.Module()
        self.heads.lin = nn.Linear(84, n * 84)

    def forward(self, x):
        n = self.n
        B = x.shape[0] // n
        mixed = F.conv2d(x.view(B, n, 20, 20), self.mux.kernels.view(1, n, 3, 3), padding=1)  # sum over instances
        l = self.lenet
        f = F.max_pool2d(torch.tanh(l.c1(mixed)), 2)
        f = F.max_pool2d(torch.tanh(l.c3(f)), 2)
        f = torch.tanh(l.f6(torch.tanh(l.c5(f)).flatten(1)))
        heads = torch.tanh(self.heads.lin(f)).view(B * n, 84)
        return l.ol(heads)


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

    torch.manual_seed(7)
    tm = TMux(vocab=11, L=4, n=3, d=8, heads=2, ff=16, layers=1, classes=2, key_norm=2.0)
    tm.train()
    ids = torch.randint(0, 11, (6, 4))                    # B = 2 mixed sequences of N = 3
    labels = torch.randint(0, 2, (6,))
    k = torch.randint(0, 3, (2, 4 + 3 + 1))
    loss, task, r = tm(ids, labels, k)
    loss.backward()
    tensors = {"output": loss.detach(), "output.task_logits": task, "output.retrieval_logits": r,
               "input.ids": ids, "input.labels": labels, "input.k": k}
    for pname, p in tm.named_parameters():
        tensors["param." + pname] = p
        tensors["grad.param." + pname] = p.grad
    for bname, b in tm.named_buffers():
        tensors["buffer." + bname] = b
    path = os.path.join(OUT, "tmux.safetensors")
    write_safetensors(path, tensors, {"vocab": 11, "max_len": 4, "n": 3, "d_model": 8, "heads": 2,
                                      "dim_feedforward": 16, "layers": 1, "num_classes": 2, "key_norm": 2.0,
                                      "task_coeff": 0.9, "retrieval_coeff": 0.1})
    print(f"{path}: {os.path.getsize(path)} bytes, {len(tensors)} tensors")

    torch.manual_seed(8)
    cm = CnnMux(2)
    # The LeNet's own gradients are checked by lenet.safetensors; here: C1 (fed by the mux), the heads and x.
    record("cnnmux", cm, {"x": torch.rand(4, 1, 20, 20)}, lambda m, x, i: m(x), {"n": 2, "mux": "gaussian"}, 16,
           skip_grads=("lenet.c3", "lenet.c5", "lenet.f6", "lenet.ol"), skip_params=("lenet.",))

    torch.manual_seed(4)
    net = LeNet()
    record("lenet", net, {"x": torch.rand(2, 1, 20, 20)}, lambda m, x, i: m(x),
           {"in_channels": 1, "c1": 6, "num_classes": 10}, 14)


if __name__ == "__main__":
    main()
