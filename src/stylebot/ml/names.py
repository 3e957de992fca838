"""Model names, importable without torch (the job contract and the CLI list them cheaply)."""

# The official CycleGAN checkpoint names (pretrained_models/<name>.pth on the authors' server).
CYCLEGAN_MODELS: tuple[str, ...] = (
    "style_monet",
    "style_cezanne",
    "style_ukiyoe",
    "style_vangogh",
    "summer2winter_yosemite",
    "winter2summer_yosemite",
)
BACKBONES: tuple[str, ...] = ("vgg19", "vgg16")
