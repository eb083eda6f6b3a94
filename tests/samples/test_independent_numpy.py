"""Strata's reference execution of ResNet-18, Llama and ViT equals independent NumPy implementations."""

from math import erf

import numpy as np

from strata.compiler.execution import reference
from strata.compiler.frontend import load_model
from tests.support import sample_values


def _run(name, overrides):
    """Strata's output for the sample, and its inputs and params in float64."""
    module = load_model(f"samples/{name}.model", overrides)
    inputs, params = sample_values(module)
    (out,) = reference.run_module(module, inputs, params)
    return out, inputs, {k: v.astype(np.float64) for k, v in params.items()}


def _close(out, want):
    return np.abs(out - want).max() <= 1e-4 * np.abs(want).max()


def conv2d(x, w, b, stride=1, padding=0):
    """NCHW convolution, groups=1, dilation=1: a sum over kernel offsets."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return y + b[None, :, None, None]


def maxpool2d(x, kernel, stride, padding):
    n, c, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w + 2 * padding - kernel) // stride + 1
    y = np.full((n, c, oh, ow), -np.inf)
    for i in range(kernel):
        for j in range(kernel):
            y = np.maximum(y, x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride])
    return y


def relu(x):
    return np.maximum(x, 0)


def layernorm(x, g, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def rmsnorm(x, g, eps=1e-6):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * g


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def silu(x):
    return x / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v, causal=False):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = np.where(np.triu(np.ones((n, n), bool), 1), -np.inf, s)
    return softmax(s) @ v


def heads(t, h):
    """[B, S, h*dh] -> [B, h, S, dh]."""
    b, s, d = t.shape
    return t.reshape(b, s, h, d // h).transpose(0, 2, 1, 3)


def merge_heads(t):
    """[B, h, S, dh] -> [B, S, h*dh]."""
    b, h, s, dh = t.shape
    return t.transpose(0, 2, 1, 3).reshape(b, s, h * dh)


def test_resnet18_matches_independent_numpy():
    out, inputs, p = _run("resnet18", {"HW": 32, "W0": 8, "NC": 10})

    def basic(x, i, stride=1):
        a = f"basic.{i}."
        h = relu(conv2d(x, p[a + "w1"], p[a + "b1"], stride=stride, padding=1))
        h = conv2d(h, p[a + "w2"], p[a + "b2"], padding=1)
        return relu(h + x)

    def down(x, i):
        a = f"down.{i}."
        h = relu(conv2d(x, p[a + "w1"], p[a + "b1"], stride=2, padding=1))
        h = conv2d(h, p[a + "w2"], p[a + "b2"], padding=1)
        return relu(h + conv2d(x, p[a + "wp"], p[a + "bp"], stride=2))

    x = relu(conv2d(inputs["image"].astype(np.float64), p["stem_w"], p["stem_b"], stride=2, padding=3))
    x = maxpool2d(x, kernel=3, stride=2, padding=1)
    x = basic(basic(x, 0), 1)
    x = basic(down(x, 0), 2)
    x = basic(down(x, 1), 3)
    x = basic(down(x, 2), 4)
    x = x.mean(axis=(2, 3))
    want = x @ p["fc_w"] + p["fc_b"]
    assert out.shape == want.shape == (1, 10)
    assert _close(out, want)


def test_llama_matches_independent_numpy():
    L, S, D, H, KVH = 2, 16, 64, 4, 2
    out, inputs, p = _run("llama", {"S": S, "D": D, "H": H, "KVH": KVH, "F": 96, "V": 128})
    cos, sin = p["rope_cos"], p["rope_sin"]

    def rope(t):
        t1, t2 = np.split(t, 2, axis=-1)
        return t * cos + np.concatenate([-t2, t1], axis=-1) * sin

    x = p["embed"][inputs["tokens"]]
    for i in range(L):
        a = f"layer.{i}."
        h = rmsnorm(x, p[a + "attn_norm"])
        q = rope(heads(h @ p[a + "wq"], H))
        # Head j of q attends with key/value head j // (H / KVH).
        k = np.repeat(rope(heads(h @ p[a + "wk"], KVH)), H // KVH, axis=1)
        v = np.repeat(heads(h @ p[a + "wv"], KVH), H // KVH, axis=1)
        x = x + merge_heads(attention(q, k, v, causal=True)) @ p[a + "wo"]
        h = rmsnorm(x, p[a + "mlp_norm"])
        x = x + (silu(h @ p[a + "w_gate"]) * (h @ p[a + "w_up"])) @ p[a + "w_down"]
    want = rmsnorm(x, p["norm"]) @ p["lm_head"]
    assert out.shape == want.shape == (1, S, 128)
    assert _close(out, want)


def test_vit_matches_independent_numpy():
    L, H, D, P = 2, 4, 48, 8
    out, inputs, p = _run("vit", {"HW": 32, "P": P, "D": D, "H": H, "L": L, "NC": 10})

    x = conv2d(inputs["image"].astype(np.float64), p["patch_w"], p["patch_b"], stride=P)
    x = x.reshape(1, D, -1).transpose(0, 2, 1)
    x = np.concatenate([p["cls"], x], axis=1) + p["pos"]
    for i in range(L):
        a = f"encoder.{i}."
        qkv = layernorm(x, p[a + "ln1_g"], p[a + "ln1_b"], eps=1e-6) @ p[a + "w_qkv"] + p[a + "b_qkv"]
        q, k, v = (heads(t, H) for t in np.split(qkv, 3, axis=-1))
        x = x + merge_heads(attention(q, k, v)) @ p[a + "w_o"] + p[a + "b_o"]
        h = gelu(layernorm(x, p[a + "ln2_g"], p[a + "ln2_b"], eps=1e-6) @ p[a + "w1"] + p[a + "b1"])
        x = x + h @ p[a + "w2"] + p[a + "b2"]
    x = layernorm(x, p["ln_g"], p["ln_b"], eps=1e-6)
    want = x[:, 0] @ p["head_w"] + p["head_b"]
    assert out.shape == want.shape == (1, 10)
    assert _close(out, want)
