"""Training augmentation on whole batches on the device, with per-image randomness.

:class:`BatchAugment` turns a uint8 (B, 3, 32, 32) batch into float [0, 1] (B, 3, S, S) with
every random parameter drawn per image from the caller's generator and no Python loop over
images. The order is fixed:

1. AutoAugment (CIFAR-10 policy) or TrivialAugment on uint8, grouped by operation;
2. random crop with padding (or to ``input_size`` < 32) and horizontal flip, one uint8 gather;
3. conversion to float [0, 1];
4. RandomResizedCrop and rotation, one bilinear ``grid_sample``;
5. 3x3 Gaussian blur; 6. cutout and random erasing; 7. mixup or cutmix (whole batch).

Crop and flip are exact on integers, so running them before the float conversion gives the same
images with a quarter of the memory traffic.

Cutout and random erasing fill with the CIFAR-10 mean colour: the reference implementations
zero *normalised* images, and here normalisation happens later, inside the model.

Example:
    >>> aug = BatchAugment(AugmentConfig(cutout=8))
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    >>> out, target = aug(x, torch.zeros(4, dtype=torch.long), g, epoch=0)
    >>> out.shape, out.dtype, target.dtype
    (torch.Size([4, 3, 32, 32]), torch.float32, torch.int64)
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from cifar_search.errors import ConfigError
from cifar_search.train.config import CIFAR10_MEAN, AugmentConfig

logger = logging.getLogger(__name__)

IMAGE_SIZE = 32  # pixels, side of the stored images
BLUR_SIGMA = (0.1, 2.0)  # pixels, range of the per-image Gaussian sigma (torchvision's default)
ERASE_SCALE = (0.02, 0.33)  # fraction of the image area erased (torchvision RandomErasing)
ERASE_RATIO = (0.3, 3.3)  # aspect ratio range of the erased box (torchvision)
RRC_RATIO = (3 / 4, 4 / 3)  # aspect ratio range of RandomResizedCrop (torchvision)
ATTEMPTS = 10  # boxes tried per image by RandomResizedCrop / RandomErasing, as torchvision


class BatchAugment:
    """Callable batch augmentation described by an :class:`AugmentConfig`.

    Args:
        cfg: what to apply.
        input_size: side of the output images, pixels (< 32: random crops of that size).
        num_classes: width of the soft targets mixup and cutmix produce.

    Calling it with ``(x uint8 (B, 3, 32, 32), y int64 (B,), generator, epoch)`` returns
    ``(x float32 in [0, 1] (B, 3, S, S), target)``. ``target`` is ``y`` when mixing is off in
    the config, else float (B, num_classes) probabilities (one-hot rows for the batches the
    ``mix_prob`` draw leaves unmixed), so its type never depends on a random draw and no host
    sync is needed. All randomness comes from ``generator``, which lives on ``x``'s device.
    """

    def __init__(self, cfg: AugmentConfig, input_size: int = 32, num_classes: int = 10) -> None:
        _check_config(cfg, input_size)
        self.cfg = cfg
        self.input_size = input_size
        self.num_classes = num_classes
        self._fill: dict[torch.device, torch.Tensor] = {}

    @property
    def mixes(self) -> bool:
        """True when targets are soft (mixup or cutmix on)."""
        return self.cfg.mixup_alpha > 0 or self.cfg.cutmix_alpha > 0

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, epoch: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_inputs(x, y, generator)
        cfg, g = self.cfg, generator
        flip = _flip_mask(x, cfg.flip, g, epoch)  # from the stored pixels, before any change
        if cfg.auto_augment == "autoaugment":
            x = auto_augment(x, g)
        elif cfg.auto_augment == "trivialaugment":
            x = trivial_augment(x, g)
        x = _crop_flip(x, self.input_size, cfg.crop_padding, cfg.padding_mode, flip, g)
        x = TF.to_dtype(x, torch.float32, scale=True)  # as fast as .mul_(1/255); .div_ 1.6x slower
        if cfg.resized_crop_scale < 1 or cfg.rotation > 0:
            x = _resized_crop_rotate(x, cfg.resized_crop_scale, cfg.rotation, g)
        if cfg.blur > 0:
            x = _blur(x, cfg.blur, g)
        if cfg.cutout > 0:
            x = torch.where(_cutout_mask(x, cfg.cutout, g), self._mean(x), x)
        if cfg.random_erasing > 0:
            x = torch.where(_erasing_mask(x, cfg.random_erasing, g), self._mean(x), x)
        if self.mixes:
            return _mix(x, y, cfg, self.num_classes, g)
        return x, y

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        if x.device not in self._fill:
            self._fill[x.device] = torch.tensor(CIFAR10_MEAN, device=x.device).view(1, 3, 1, 1)
        return self._fill[x.device]


def _check_config(cfg: AugmentConfig, input_size: int) -> None:
    if not 8 <= input_size <= IMAGE_SIZE:
        raise ConfigError(f"input_size must be in [8, 32] pixels, but got {input_size=}.")
    if cfg.padding_mode == "reflect" and cfg.crop_padding >= IMAGE_SIZE:
        raise ConfigError(
            "augment.crop_padding must be < 32 pixels with reflect padding, "
            f"but got {cfg.crop_padding}."
        )
    for name in ("crop_padding", "cutout", "rotation", "mixup_alpha", "cutmix_alpha"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"augment.{name} must be >= 0, but got {getattr(cfg, name)}.")
    for name in ("blur", "random_erasing", "mix_prob"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(f"augment.{name} must be in [0, 1], but got {getattr(cfg, name)}.")
    if not 0 < cfg.resized_crop_scale <= 1:
        raise ConfigError(
            f"augment.resized_crop_scale must be in (0, 1], got {cfg.resized_crop_scale}."
        )


def _check_inputs(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (3, 32, 32):
        raise ValueError(f"expected uint8 (B, 3, 32, 32) images, got {x.dtype} {tuple(x.shape)}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"expected {x.shape[0]} labels, got shape {tuple(y.shape)}")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator on {generator.device}, images on {x.device}: use one device")


def _uniform(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator,
             device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=device).mul_(hi - lo).add_(lo)


def _flip_mask(
    x: torch.Tensor, mode: str, g: torch.Generator, epoch: int
) -> torch.Tensor | None:
    """Per-image horizontal flip decision (B,) bool, or None for no flipping.

    ``alternating`` (airbench): each image gets a fixed random bit and is flipped when the bit
    differs from the epoch's parity, so it is seen both ways in every two epochs. The batch
    brings no dataset indices, so the bit is a hash of the image's stored pixels: fixed for the
    image, independent of the batch it lands in.
    """
    if mode == "none":
        return None
    if mode == "random":
        return torch.rand(x.shape[0], generator=g, device=x.device) < 0.5
    flat = x.reshape(x.shape[0], -1)[:, ::47].to(torch.int64)  # 66 pixel values per image
    weights = torch.arange(1, flat.shape[1] + 1, device=x.device).mul_(40503)
    h = (flat * weights).sum(1) & 0x7FFFFFFF  # < 2**31, so the product below fits in int64
    h = h * 2654435761  # Knuth's multiplicative hash: bit 32 depends on every pixel used
    return ((h >> 32) & 1).bool() ^ bool(epoch % 2)


def _crop_indices(
    offset: torch.Tensor, size: int, padding: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Source positions (B, size) of a crop starting at ``offset`` in the padded image.

    Reflect padding is index arithmetic, so no padded copy is made; zero padding clamps the
    index and returns a validity mask.
    """
    pos = offset[:, None] + torch.arange(size, device=offset.device) - padding
    if mode == "reflect":
        pos = pos.abs()
        return torch.where(pos > IMAGE_SIZE - 1, 2 * (IMAGE_SIZE - 1) - pos, pos), None
    valid = (pos >= 0) & (pos < IMAGE_SIZE)
    return pos.clamp(0, IMAGE_SIZE - 1), valid


def _crop_flip(
    x: torch.Tensor, size: int, padding: int, mode: str, flip: torch.Tensor | None,
    g: torch.Generator,
) -> torch.Tensor:
    """Random crop (with padding) and flip of uint8 images as one gather.

    Measured on 2 CPU cores, 512 images, uint8: this gather 1.6 ms (crop + flip); torchvision
    v2 ``pad`` (reflect) + gather 32 ms; ``pad`` + airbench-style crop per offset group with
    v2 ``crop`` 32 ms and a host sync per group; v2 ``horizontal_flip`` + ``where`` alone
    1.3 ms. torchvision has no per-image crop, so the gather stays.
    """
    b = x.shape[0]
    span = IMAGE_SIZE + 2 * padding - size  # largest offset, pixels
    if span == 0 and flip is None:
        return x
    if span > 0:
        offset = torch.randint(span + 1, (2, b), generator=g, device=x.device)
    else:
        offset = torch.zeros(2, b, dtype=torch.int64, device=x.device)
    rows, row_ok = _crop_indices(offset[0], size, padding, mode)
    cols, col_ok = _crop_indices(offset[1], size, padding, mode)
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        col_ok = None if col_ok is None else torch.where(flip[:, None], col_ok.flip(1), col_ok)
    index = (rows[:, :, None] * IMAGE_SIZE + cols[:, None, :]).view(b, 1, size * size)
    out = x.reshape(b, 3, -1).gather(2, index.expand(b, 3, -1)).view(b, 3, size, size)
    if row_ok is not None and col_ok is not None:
        out = out * (row_ok[:, None, :, None] & col_ok[:, None, None, :])
    return out


def _resized_crop_rotate(
    x: torch.Tensor, min_scale: float, degrees: float, g: torch.Generator
) -> torch.Tensor:
    """RandomResizedCrop (torchvision's box sampling) and rotation as one bilinear resample.

    The rotation turns the image about its centre (corners fill with black); the crop box is
    then taken from the turned image and resized back to the input size. torchvision's
    ``resized_crop`` and ``rotate`` take one set of parameters per call, hence the own grid.
    """
    b, _, s, _ = x.shape
    theta = torch.eye(3, device=x.device).repeat(b, 1, 1)
    if min_scale < 1:
        i, j, h, w = _boxes(b, s, (min_scale, 1.0), RRC_RATIO, g, x.device, inside=False)
        theta[:, 0, 0], theta[:, 0, 2] = w / s, (2 * j + w) / s - 1
        theta[:, 1, 1], theta[:, 1, 2] = h / s, (2 * i + h) / s - 1
    if degrees > 0:
        angle = _uniform((b,), -degrees, degrees, g, x.device).deg2rad_()
        cos, sin = angle.cos(), angle.sin()
        rot = torch.stack([cos, -sin, sin, cos], 1).view(b, 2, 2)
        theta[:, :2, :] = rot @ theta[:, :2, :]
    grid = F.affine_grid(theta[:, :2], [b, 3, s, s], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _boxes(
    b: int, s: int, scale: tuple[float, float], ratio: tuple[float, float],
    g: torch.Generator, device: torch.device, *, inside: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image boxes (top, left, height, width) in pixels, torchvision's rejection sampling.

    ``ATTEMPTS`` candidates per image are drawn at once and the first that fits is kept.
    ``inside=False`` (RandomResizedCrop): boxes up to the whole image; no fit -> whole image.
    ``inside=True`` (RandomErasing): boxes strictly smaller than the image; no fit -> height 0.
    """
    area = s * s * _uniform((b, ATTEMPTS), *scale, g, device)
    aspect = _uniform((b, ATTEMPTS), math.log(ratio[0]), math.log(ratio[1]), g, device).exp_()
    if inside:  # torchvision RandomErasing: h from area * ratio
        h, w = (area * aspect).sqrt_().round_(), (area / aspect).sqrt_().round_()
        fits = (h < s) & (w < s)
    else:  # torchvision RandomResizedCrop: w from area * ratio
        w, h = (area * aspect).sqrt_().round_(), (area / aspect).sqrt_().round_()
        fits = (w > 0) & (w <= s) & (h > 0) & (h <= s)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # first fitting attempt
    found = fits.any(1)
    fallback = 0.0 if inside else float(s)
    h = torch.where(found, h.gather(1, first).squeeze(1), fallback)
    w = torch.where(found, w.gather(1, first).squeeze(1), fallback)
    u = torch.rand(2, b, generator=g, device=device)
    top, left = (u[0] * (s - h + 1)).floor_(), (u[1] * (s - w + 1)).floor_()
    return top, left, h, w


def _box_mask(
    top: torch.Tensor, left: torch.Tensor, h: torch.Tensor, w: torch.Tensor, s: int
) -> torch.Tensor:
    """(B, 1, s, s) bool, True inside each image's box; boxes may reach past the border.

    torchvision's ``erase`` takes one box per call; a mask gives every image its own.
    """
    ar = torch.arange(s, device=top.device)
    rows = (ar >= top[:, None]) & (ar < (top + h)[:, None])
    cols = (ar >= left[:, None]) & (ar < (left + w)[:, None])
    return rows[:, None, :, None] & cols[:, None, None, :]


def _blur(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """3x3 Gaussian blur with probability ``p`` per image, sigma uniform per image.

    The separable kernel [a, 1, a] / (1 + 2a), a = exp(-1 / (2 sigma^2)), is applied as shifted
    sums with a per-image ``a`` (0 for images left sharp); torchvision's ``gaussian_blur``
    takes one sigma per call. Borders reflect, as torchvision.
    """
    b = x.shape[0]
    sigma = _uniform((b,), *BLUR_SIGMA, g, x.device)
    apply = torch.rand(b, generator=g, device=x.device) < p
    a = torch.where(apply, (-0.5 / sigma.square()).exp(), 0.0).view(b, 1, 1, 1)
    norm = 1 + 2 * a
    xp = F.pad(x, (1, 1, 0, 0), mode="reflect")
    x = (x + a * (xp[..., :-2] + xp[..., 2:])) / norm
    xp = F.pad(x, (0, 0, 1, 1), mode="reflect")
    return (x + a * (xp[..., :-2, :] + xp[..., 2:, :])) / norm


def _cutout_mask(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """DeVries & Taylor cutout: a ``size`` pixel square centred anywhere, clipped at borders."""
    b, s = x.shape[0], x.shape[-1]
    centre = torch.randint(s, (2, b), generator=g, device=x.device)
    corner = centre - size // 2
    side = torch.full((b,), size, device=x.device)
    return _box_mask(corner[0], corner[1], side, side, s)


def _erasing_mask(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """torchvision RandomErasing boxes (scale 0.02-0.33, ratio 0.3-3.3), probability ``p``."""
    b, s = x.shape[0], x.shape[-1]
    top, left, h, w = _boxes(b, s, ERASE_SCALE, ERASE_RATIO, g, x.device, inside=True)
    apply = torch.rand(b, generator=g, device=x.device) < p
    return _box_mask(top, left, h * apply, w, s)


def _beta(alpha: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """One Beta(alpha, alpha) draw as a 0-d tensor, from two Gamma draws.

    torch.distributions.Beta takes no generator; ``torch._standard_gamma`` (what it uses) does.
    """
    gamma = torch._standard_gamma(torch.full((2,), alpha, device=device), generator=g)
    return (gamma[0] / gamma.sum()).nan_to_num(0.5)


def _mix(
    x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, num_classes: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix with a batch permutation, applied with probability ``mix_prob``.

    Both are ``x + m * (x[perm] - x)`` with ``m`` a constant (mixup) or a box (cutmix), so the
    random choices stay on the device: ``m`` is zeroed for an unmixed batch. With both on, one
    of the two is chosen 50/50 per batch.
    """
    b, s, dev = x.shape[0], x.shape[-1], x.device
    perm = torch.randperm(b, generator=g, device=dev)
    u = torch.rand(4, generator=g, device=dev)  # apply, which, box centre row and column
    weight = torch.zeros(1, 1, s, s, device=dev)
    if cfg.mixup_alpha > 0:
        weight = weight + (1 - _beta(cfg.mixup_alpha, g, dev))
    if cfg.cutmix_alpha > 0:
        side = (s * (1 - _beta(cfg.cutmix_alpha, g, dev)).sqrt()).floor()  # pixels
        centre = (u[2:] * s).floor()
        lo = (centre - (side / 2).floor()).clamp(0, s)
        hi = (centre + (side / 2).floor()).clamp(0, s)
        box = _box_mask(lo[:1], lo[1:], hi[:1] - lo[:1], hi[1:] - lo[1:], s).float()
        weight = box if cfg.mixup_alpha <= 0 else torch.where(u[1] < 0.5, box, weight)
    weight = weight * (u[0] < cfg.mix_prob)
    x = torch.lerp(x, x[perm], weight)
    taken = weight.mean()  # fraction of each image that comes from its partner
    one_hot = x.new_zeros(b, num_classes).scatter_(1, y[:, None], 1.0)  # no range check, no sync
    return x, torch.lerp(one_hot, one_hot[perm], taken)


# AutoAugment and TrivialAugment ------------------------------------------------------------
# Each image draws its own operations and magnitudes. Images are sorted by operation and each
# group goes through one batched call (one host sync per stage, for the group sizes). Geometric
# and colour operations take per-image magnitudes (torchvision's take one scalar per call);
# AutoContrast, Equalize and Invert are torchvision's batched kernels. Semantics (centres, fill 0,
# nearest interpolation, uint8 rounding) follow torchvision.transforms.v2, checked in the tests.

OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert",
)
_TABLES: dict[tuple[str, torch.device], dict[str, torch.Tensor]] = {}


@functools.cache
def _policy_tables() -> dict[str, dict[str, torch.Tensor]]:
    """The CIFAR-10 AutoAugment policy and the TrivialAugmentWide space, from torchvision.

    Read from torchvision's own tables so the two pipelines cannot drift apart (CPU tensors).
    """
    from torchvision.transforms import v2

    space = v2.AutoAugment._AUGMENTATION_SPACE
    rows = []  # (op, probability, magnitude, signed) for the 25 sub-policies x 2 steps
    for step in v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)._policies:
        for name, prob, bin_ in step:
            values = space[name][0](10, IMAGE_SIZE, IMAGE_SIZE)
            mag = 0.0 if values is None else float(values[bin_])
            rows.append((OPS.index(name), prob, mag, float(space[name][1])))
    aa = torch.tensor(rows, dtype=torch.float64).view(-1, 2, 4)
    wide = v2.TrivialAugmentWide._AUGMENTATION_SPACE
    mags = [fn(31, IMAGE_SIZE, IMAGE_SIZE) for fn, _ in wide.values()]
    return {
        "autoaugment": {
            "op": aa[..., 0].long(), "prob": aa[..., 1].float(), "mag": aa[..., 2].float(),
            "signed": aa[..., 3].bool(),
        },
        "trivialaugment": {
            "op": torch.tensor([OPS.index(n) for n in wide]),
            "mag": torch.stack([torch.zeros(31) if m is None else m.float() for m in mags]),
            "signed": torch.tensor([signed for _, signed in wide.values()]),
        },
    }


def _tables(kind: str, device: torch.device) -> dict[str, torch.Tensor]:
    if (kind, device) not in _TABLES:
        _TABLES[kind, device] = {k: v.to(device) for k, v in _policy_tables()[kind].items()}
    return _TABLES[kind, device]


def _signs(signed: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """-1 with probability 1/2 where the operation is signed, else +1."""
    flip = torch.rand(signed.shape, generator=g, device=signed.device) < 0.5
    return torch.where(signed & flip, -1.0, 1.0)


def auto_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """AutoAugment, CIFAR-10 policy: per image a random sub-policy of two steps, each applied
    with its own probability and a random sign."""
    t = _tables("autoaugment", x.device)
    b = x.shape[0]
    sub = torch.randint(t["op"].shape[0], (b,), generator=g, device=x.device)
    applied = torch.rand(b, 2, generator=g, device=x.device) < t["prob"][sub]
    op = torch.where(applied, t["op"][sub], 0)  # 0: Identity
    mag = t["mag"][sub] * _signs(t["signed"][sub], g)
    return _apply_ops(_apply_ops(x, op[:, 0], mag[:, 0]), op[:, 1], mag[:, 1])


def trivial_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """TrivialAugmentWide: per image one random operation with a random magnitude (31 bins)."""
    t = _tables("trivialaugment", x.device)
    b = x.shape[0]
    k = torch.randint(t["op"].shape[0], (b,), generator=g, device=x.device)
    level = torch.randint(t["mag"].shape[1], (b,), generator=g, device=x.device)
    mag = t["mag"][k, level] * _signs(t["signed"][k], g)
    return _apply_ops(x, t["op"][k], mag)


def _apply_ops(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """Apply operation ``op[i]`` with magnitude ``mag[i]`` to image i, one call per operation."""
    counts = torch.bincount(op, minlength=len(OPS)).tolist()  # the host sync: group sizes
    if counts[0] == len(x):
        return x
    order = torch.argsort(op, stable=True)
    groups = zip(torch.split(x[order], counts), torch.split(mag[order], counts), _OP_FNS,
                 strict=True)
    done = torch.cat([fn(xg, mg) for xg, mg, fn in groups if len(xg)])
    return torch.empty_like(x).index_copy_(0, order, done)


def _affine_nearest(x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Per-image affine warp, nearest neighbour, fill 0, as torchvision's ``affine``.

    ``coeffs`` (n, 6) map output pixel centres to source positions, both in pixels relative to
    the image centre: ``src_x = a x + b y + c``, ``src_y = d x + e y + f``.
    """
    n, c, h, w = x.shape
    xs = torch.arange(w, device=x.device) + (0.5 - w / 2)
    ys = (torch.arange(h, device=x.device) + (0.5 - h / 2))[:, None]
    k = coeffs[:, :, None, None]
    src_x = (k[:, 0] * xs + k[:, 1] * ys + k[:, 2]).add_(w / 2 - 0.5).round_()
    src_y = (k[:, 3] * xs + k[:, 4] * ys + k[:, 5]).add_(h / 2 - 0.5).round_()
    inside = (src_x >= 0) & (src_x <= w - 1) & (src_y >= 0) & (src_y <= h - 1)
    index = (src_y.clamp_(0, h - 1) * w + src_x.clamp_(0, w - 1)).long().view(n, 1, h * w)
    out = x.reshape(n, c, h * w).gather(2, index.expand(n, c, -1)).view(n, c, h, w)
    return out * inside[:, None]


def _shear_x(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine_nearest(x, torch.stack([one, m, m * x.shape[-2] / 2, zero, one, zero], 1))


def _shear_y(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine_nearest(x, torch.stack([one, zero, zero, m, one, m * x.shape[-1] / 2], 1))


def _translate_x(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine_nearest(x, torch.stack([one, zero, -m.trunc(), zero, one, zero], 1))


def _translate_y(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _affine_nearest(x, torch.stack([one, zero, zero, zero, one, -m.trunc()], 1))


def _rotate(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    r = -m.deg2rad()  # degrees counter-clockwise, as torchvision's rotate
    cos, sin, zero = r.cos(), r.sin(), torch.zeros_like(m)
    return _affine_nearest(x, torch.stack([cos, sin, zero, -sin, cos, zero], 1))


def _gray(xf: torch.Tensor) -> torch.Tensor:
    """Luma as torchvision, floored as its uint8 path does."""
    return (xf[:, 0:1] * 0.2989 + xf[:, 1:2] * 0.587 + xf[:, 2:3] * 0.114).floor_()


def _blend(xf: torch.Tensor, other: torch.Tensor | None, m: torch.Tensor) -> torch.Tensor:
    """torchvision's uint8 blend with factor 1 + m per image: truncating cast after clamping.

    The factor is rounded to float32 from float64, the other weight is exactly -m and the sum
    is fused (``addcmul``), as in torchvision's scalar arithmetic: results match bit for bit.
    """
    out = xf * (1 + m.double()).float().view(-1, 1, 1, 1)
    if other is not None:
        out = torch.addcmul(out, other, -m.view(-1, 1, 1, 1))
    return out.clamp_(0, 255).to(torch.uint8)


def _brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return _blend(x.float(), None, m)


def _color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    return _blend(xf, _gray(xf), m)


def _contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    return _blend(xf, _gray(xf).mean((1, 2, 3), keepdim=True), m)


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    a, b = 1 / 13, 5 / 13  # torchvision's smoothing kernel
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], device=x.device).expand(3, 1, 3, 3)
    smooth = F.conv2d(xf, kernel, groups=3).round_()
    inner = xf[..., 1:-1, 1:-1]  # borders stay as they are
    inner.addcmul_(smooth.sub_(inner), -m.view(-1, 1, 1, 1))
    return xf.clamp_(0, 255).to(torch.uint8)


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    bits = m.long().clamp(0, 8)  # bits kept per channel
    mask = ((torch.ones_like(bits) << bits) - 1) << (8 - bits)
    return x & mask.to(torch.uint8).view(-1, 1, 1, 1)


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= (255 * m).view(-1, 1, 1, 1), x.bitwise_not(), x)


_OP_FNS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    lambda x, m: x,  # Identity
    _shear_x, _shear_y, _translate_x, _translate_y, _rotate,
    _brightness, _color, _contrast, _sharpness, _posterize, _solarize,
    lambda x, m: TF.autocontrast(x),
    lambda x, m: TF.equalize(x),
    lambda x, m: TF.invert(x),
)
