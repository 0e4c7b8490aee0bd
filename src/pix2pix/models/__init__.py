"""The networks (networks.py: U-Net, ResNet, PatchGAN; resnet_unet.py: the ResNet-18 U-Net;
norms.py: their norm layers) and the losses (losses.py). Built from plain arguments; imports
config.py and data/ only."""
