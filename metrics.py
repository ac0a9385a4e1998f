"""Pure numerics of the evaluation (numpy and SciPy only, no TensorFlow): the distances of fid.py's
table (Frechet distance, KID, precision/recall, density/coverage, memorisation), whether a
classifier that judges images can tell the classes apart, whether generated images are recognised
as their class more often than chance, and how many images a measure needs.

The Frechet distance between the Gaussians N(mu1, S1) and N(mu2, S2) fitted to two feature sets
(Heusel et al. 2017) is FID = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), computed in float64
with tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))). KID (Binkowski et al. 2018) is the
unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3.

The judge's check (`chance_check`): on held-out real images, the per-class recall and their mean
(ACSA). A classifier whose predictions do not depend on the true class has an expected ACSA of
exactly 1/K whatever it predicts (its per-class recalls are its prediction rates, which sum to 1),
so a collapsed classifier, one that gives every image the same class, scores 1/K. The p-value is
a permutation test of that null (the true labels shuffled among the held-out images, the ACSA
recomputed): the share of permutations with an ACSA at least the observed one. The judge is
trusted when p < `TRUST_ALPHA`. A classifier that predicts one class only has the same ACSA under
every permutation, so p = 1.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np

TRUST_ALPHA = 0.01
"""Significance level of the judge's permutation test and of the generated images' recognition test."""
PERMUTATIONS = 2000
"""Permutations of the judge's test; the smallest p it can give is 1 / (PERMUTATIONS + 1)."""
NEIGHBOURS = 5
"""k of the k-nearest-neighbour manifolds of precision, recall, density and coverage (both papers' k)."""


KID_SUBSETS = 10
KID_SUBSET_SIZE = 1000


# ---------------------------------------------------------------------------------------------
# The distances of generated to real features (numpy in, float out): fid.py's table


class SingularCovarianceWarning(UserWarning):
    """A covariance estimated from no more samples than feature dimensions (it is singular)."""


def softmax(logits):
    """Row-wise softmax of (N, K) logits, shifted by each row's maximum for stability."""
    z = np.asarray(logits, np.float64) - np.max(logits, axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _as_statistics(mu, sigma):
    mu = np.asarray(mu, np.float64).reshape(-1)
    sigma = np.asarray(sigma, np.float64)
    if sigma.shape != (mu.size, mu.size):
        raise ValueError(f"covariance of shape {sigma.shape} does not match a mean of size {mu.size}")
    return mu, (sigma + sigma.T) / 2


def psd_sqrt(sigma):
    """Symmetric square root of a covariance, negative round-off eigenvalues clipped to 0."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1_sqrt, sigma2):
    """tr sqrt(S1 S2) = sum sqrt(eig(sqrt(S1) S2 sqrt(S1))), given sqrt(S1)."""
    m = sigma1_sqrt @ sigma2 @ sigma1_sqrt
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Singular covariances are fine (the square roots are of positive semi-definite matrices);
    the result is clipped at 0 against round-off.
    """
    mu1, sigma1 = _as_statistics(mu1, sigma1)
    mu2, sigma2 = _as_statistics(mu2, sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"means of different sizes: {mu1.size} and {mu2.size}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(psd_sqrt(sigma1), sigma2)
    return max(float(value), 0.0)


def feature_statistics(features):
    """Mean and covariance (float64, unbiased) of features (N, d); warns when N <= d."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"features must be a non-empty (N, d) array, got shape {f.shape}")
    n, d = f.shape
    if n <= d:
        warnings.warn(f"{n} samples of {d}-d features: the covariance has rank at most {n - 1} < {d} "
                      "and is singular; the FID stays finite but is biased upward",
                      SingularCovarianceWarning, stacklevel=2)
    sigma = np.cov(f, rowvar=False) if n > 1 else np.zeros((d, d))
    return f.mean(axis=0), np.atleast_2d(sigma)


def _polynomial_mmd2(x, y):
    """Unbiased MMD^2 of samples x (m, d) and y (n, d) with k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    m, n = len(x), len(y)
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kernel_inception_distance(features1, features2, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """KID: unbiased polynomial-kernel MMD^2 of two feature sets (Binkowski et al. 2018).

    When both sets have at most ``subset_size`` samples the estimate uses all of them; otherwise it
    is the mean over ``subsets`` random subsets of up to ``subset_size`` samples from each set.
    """
    x = np.asarray(features1, np.float64)
    y = np.asarray(features2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features of shapes {x.shape} and {y.shape} are not two (N, d) sets of equal d")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    m, n = min(len(x), subset_size), min(len(y), subset_size)
    if m == len(x) and n == len(y):
        return _polynomial_mmd2(x, y)
    rng = np.random.default_rng(seed)
    return float(np.mean([
        _polynomial_mmd2(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), n, replace=False)])
        for _ in range(subsets)
    ]))


def _distance_chunks(a, b, chunk=1024):
    """(start, Euclidean distances of the rows a[start:start + chunk] to every row of b), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    b_squared = (b * b).sum(axis=1)
    for start in range(0, len(a), chunk):
        x = a[start:start + chunk]
        squared = (x * x).sum(axis=1)[:, None] + b_squared[None, :] - 2.0 * x @ b.T
        yield start, np.sqrt(np.maximum(squared, 0.0))


def nearest_neighbours(a, b, leave_one_out=False):
    """(distance, index) of every row of a's nearest row of b; with leave_one_out (a is b), of its
    nearest other row."""
    distances, indices = np.empty(len(a)), np.empty(len(a), np.int64)
    for start, d in _distance_chunks(a, b):
        if leave_one_out:
            d[np.arange(len(d)), start + np.arange(len(d))] = np.inf
        indices[start:start + len(d)] = d.argmin(axis=1)
        distances[start:start + len(d)] = d[np.arange(len(d)), indices[start:start + len(d)]]
    return distances, indices


def knn_radii(x, k):
    """Distance of every row of x to its k-th nearest other row (k at most len(x) - 1)."""
    k = min(k, len(x) - 1)
    out = np.empty(len(x))
    for start, d in _distance_chunks(x, x):
        d[np.arange(len(d)), start + np.arange(len(d))] = np.inf
        out[start:start + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def _inside(points, centres, radii):
    """For every point, how many of the balls (centres, radii) hold it."""
    counts = np.zeros(len(points), np.int64)
    for start, d in _distance_chunks(points, centres):
        counts[start:start + len(d)] = (d <= radii[None, :]).sum(axis=1)
    return counts


def precision_recall(real, fake, k=NEIGHBOURS):
    """Improved precision and recall (Kynkaanniemi et al. 2019): the share of fake samples inside
    the real manifold (the union of balls around every real sample reaching its k-th nearest real
    neighbour), and the share of real samples inside the fake manifold. NaN for sets under 2."""
    if min(len(real), len(fake)) < 2:
        return math.nan, math.nan
    precision = np.mean(_inside(fake, real, knn_radii(real, k)) > 0)
    recall = np.mean(_inside(real, fake, knn_radii(fake, k)) > 0)
    return float(precision), float(recall)


def density_coverage(real, fake, k=NEIGHBOURS):
    """Density and coverage (Naeem et al. 2020), on the real samples' k-nearest-neighbour balls:
    density = how many real balls hold a fake sample, on average, over k (1 when the fakes are
    distributed like the reals); coverage = the share of real balls that hold a fake sample."""
    if min(len(real), len(fake)) < 2:
        return math.nan, math.nan
    k = min(k, len(real) - 1)
    radii = knn_radii(real, k)
    density = _inside(fake, real, radii).sum() / (k * len(fake))
    coverage = np.mean(nearest_neighbours(real, fake)[0] <= radii)
    return float(density), float(coverage)


def copy_ratios(train, fake):
    """For every fake sample, its distance to its nearest training sample over a typical training
    sample's distance to its nearest other one (the median, leave one out), and that training
    sample's index. NaN ratios under 2 training samples."""
    if len(train) < 2:
        return np.full(len(fake), np.nan), np.zeros(len(fake), np.int64)
    typical = max(float(np.median(nearest_neighbours(train, train, leave_one_out=True)[0])), 1e-12)
    distances, indices = nearest_neighbours(fake, train)
    return distances / typical, indices


def memorisation(train, fake):
    """(memorised, median ratio) of copy_ratios: the share of fake samples nearer to a training
    sample than a typical training sample is to its nearest neighbour (ratio below 1), and the
    median ratio. Copies of training images give 1 and 0; new images drawn like the training images
    give about 0.5 and 1. NaN under 2 training samples."""
    ratio, _ = copy_ratios(train, fake)
    if len(fake) == 0 or np.isnan(ratio).any():
        return math.nan, math.nan
    return float(np.mean(ratio < 1.0)), float(np.median(ratio))


def per_class_recall(y_true, y_pred, num_classes):
    """Recall of each class (NaN for a class without images)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = np.bincount(y_true, minlength=num_classes).astype(np.float64)
    hits = np.bincount(y_true[y_true == y_pred], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hits / np.maximum(n, 1), np.nan)


def chance_check(y_true, y_pred, num_classes, class_names=None, alpha=TRUST_ALPHA, permutations=PERMUTATIONS,
                 seed=0) -> dict:
    """Can a classifier tell the classes apart? Its predictions `y_pred` of held-out images of
    classes `y_true`: per-class recall, ACSA (over the classes with images), accuracy, the classes
    it predicts, and the permutation p-value of ACSA against "predictions independent of the
    class" (module docstring). trusted = p < alpha; `reason` says why not."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    names = [str(n) for n in (class_names or range(num_classes))]
    counts = np.bincount(y_true, minlength=num_classes)
    present = counts > 0
    recall = per_class_recall(y_true, y_pred, num_classes)
    acsa = float(np.mean(recall[present])) if present.any() else math.nan
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(permutations):
        shuffled = rng.permutation(y_true)
        at_least += float(np.mean(per_class_recall(shuffled, y_pred, num_classes)[present])) >= acsa - 1e-12
    p_value = (at_least + 1) / (permutations + 1)
    predicted = sorted({int(c) for c in y_pred})
    trusted = bool(p_value < alpha and len(predicted) > 1)
    check = dict(held_out=dict(zip(names, counts.tolist())), recall=dict(zip(names, _finite(recall))),
                 acsa=acsa, accuracy=float(np.mean(y_true == y_pred)) if len(y_true) else math.nan,
                 chance=1.0 / num_classes, p_value=p_value, alpha=alpha, permutations=permutations,
                 predicted_classes=[names[c] for c in predicted], trusted=trusted, reason=None)
    if not trusted:
        only = f"it gives {names[predicted[0]]} for every held-out image; " if len(predicted) == 1 else ""
        check["reason"] = (f"{only}its mean per-class recall on {len(y_true)} held-out real images, {acsa:.2f}, is "
                           f"not above chance (1/{num_classes} = {1 / num_classes:.2f}; permutation p = "
                           f"{p_value:.3f}, needs < {alpha})")
    return check


def describe_check(check) -> str:
    """One line: the judge's held-out recall per class, its ACSA, chance and p-value, and the verdict."""
    recalls = ", ".join(f"{name} {'-' if r is None else f'{r:.2f}'} ({check['held_out'][name]})"
                        for name, r in check["recall"].items())
    verdict = "trusted" if check["trusted"] else "NOT trusted: " + check["reason"]
    return (f"held-out recall (images) {recalls}; ACSA {check['acsa']:.2f}, chance {check['chance']:.2f}, "
            f"p = {check['p_value']:.4f}: {verdict}")


def recognised_above_chance(recognised, images, num_classes, alpha=TRUST_ALPHA) -> list[bool]:
    """Per class: is the share `recognised[c]` of `images` generated images that the judge gives
    their class c above chance (1/K), by a one-sided binomial test at `alpha`? Noise, a constant
    image, or images that ignore their label are not, in some class."""
    from scipy.stats import binomtest
    return [bool(not math.isnan(r) and binomtest(int(round(r * images)), images, 1.0 / num_classes,
                                            alternative="greater").pvalue < alpha) for r in recognised]


KID_MIN_IMAGES = 10
"""Below this many test images of a class its KID is marked unreliable: on smallfolder.py's folder a
constant grey image scored a lower KID than the real training images against a class of 6 test
images (the KID estimator is unbiased, but its spread over so few images exceeds the gaps it ranks)."""


def minimum_images(measure, dims, k=NEIGHBOURS) -> int:
    """The fewest real (test) images of a class a measure needs to mean anything:

    * FID: dims + 1, so that the class's covariance matrix (dims x dims) has full rank; with fewer
      the Frechet distance is dominated by the estimate's bias and cannot rank models;
    * KID: `KID_MIN_IMAGES`;
    * precision, recall, density, coverage: 10 k, so that a k-nearest-neighbour ball spans at most
      a tenth of the class's images; with fewer the balls cover most of the space between them and
      a single image placed among them (a constant image) scores like the real ones;
    * memorisation (against the training images): 2 (leave one out).
    """
    return {"fid": dims + 1, "kid": KID_MIN_IMAGES, "precision": 10 * k, "recall": 10 * k, "density": 10 * k,
            "coverage": 10 * k, "memorised": 2, "copy_ratio": 2}[measure]


def _finite(values):
    return [None if v is None or not math.isfinite(v) else float(v) for v in values]


@dataclass
class FeatureSet:
    """Features of one image set and their Gaussian statistics, for FID and KID against others.

    FID between feature sets takes the same trace as :func:`frechet_distance`, in whichever of two
    equal forms is cheaper: with sqrt(S1) S2 sqrt(S1) (d x d, sqrt(S1) kept per reference set), or,
    when a set has n <= d samples so that S = F^T F with the n x d matrix F of its centred samples
    over sqrt(n - 1), with F S' F^T (n x n), which has the same nonzero eigenvalues.
    """

    features: np.ndarray

    @property
    def n(self):
        return len(self.features)

    @functools.cached_property
    def stats(self):
        return feature_statistics(self.features)

    @functools.cached_property
    def sigma_sqrt(self):
        return psd_sqrt(self.stats[1])

    @functools.cached_property
    def factor(self):
        f = np.asarray(self.features, np.float64)
        return (f - f.mean(axis=0)) / math.sqrt(max(self.n - 1, 1))

    def _trace_sqrt_product(self, other):
        small, large = (other, self) if other.n <= self.n else (self, other)
        if small.n <= self.features.shape[1]:
            m = small.factor @ large.stats[1] @ small.factor.T
            return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
        return trace_sqrt_product(self.sigma_sqrt, other.stats[1])

    def fid(self, other: "FeatureSet") -> float:
        """FID between this (reference) set and `other`."""
        (mu1, sigma1), (mu2, sigma2) = self.stats, other.stats
        diff = mu1 - mu2
        value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * self._trace_sqrt_product(other)
        return max(float(value), 0.0)

    def kid(self, other: "FeatureSet") -> float:
        """KID between this set and `other`; NaN when a set has fewer than 2 samples."""
        if min(self.n, other.n) < 2:
            return math.nan
        return kernel_inception_distance(self.features, other.features)
