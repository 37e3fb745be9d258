"""Published checkpoints into our grid models: a converter per family, each with a report of what was
mapped, adapted, dropped and left at initialization (``mae-domains pretrain --init FAMILY:PATH``)."""

from mae_domains.conversion.channels import RGB_CHANNELS, ChannelInfo, match_channels, remap_input_channels
from mae_domains.conversion.convert import convert_into, split_family
from mae_domains.conversion.mae_family import MAE_CONVERTER, convert_vit_mae, is_mae_state
from mae_domains.conversion.registry import Converter, find_converter, known_families, register_converter
from mae_domains.conversion.report import ConversionReport

__all__ = ["RGB_CHANNELS", "ChannelInfo", "match_channels", "remap_input_channels", "convert_into", "split_family",
           "MAE_CONVERTER", "convert_vit_mae", "is_mae_state", "Converter", "find_converter", "known_families",
           "register_converter", "ConversionReport"]
