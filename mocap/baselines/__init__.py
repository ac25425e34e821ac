"""Reference methods the model is compared against (Tung et al. 2017 style rows).

`optimization`: per-frame fit of the body to 2D keypoints (no learning, no temporal term).
"""
