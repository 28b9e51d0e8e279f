"""The 256 words transfer codes are made of (one byte of entropy each).

Short, common, lowercase English words chosen to be easy to say and type;
none is a prefix-typo of another in a way that matters, since a wrong word
only costs one failed attempt.
"""

from __future__ import annotations

from typing import Final

__all__ = ["WORDS"]

_TEXT: Final = """
    acorn actor adult agent album alpine amber anchor angle ankle apple april
    arrow artist aspen atlas attic autumn badge bakery balloon bamboo banana
    banjo barley basket beacon beaver bicycle biscuit blanket bonnet border
    bottle boulder breeze brick bridge broom bubble bucket buffalo bugle
    butter button cabin cactus camera canal candle canoe canyon carbon carpet carrot
    castle cedar cellar cherry chimney circus citrus clover cobalt coconut comet
    compass copper coral cotton cousin coyote cradle crayon cricket crystal cupcake
    curtain daisy dancer delta desert dinner dolphin donkey dragon dune eagle easel
    echo elbow elder ember engine falcon feather fennel ferry fiddle finch flannel
    flute forest fossil fox garden garlic gecko ginger glacier goblet
    gravel guitar hammer harbor harvest hazel helmet hermit heron hollow honey
    horizon husky igloo iguana island ivory jacket jaguar jasmine jelly jigsaw jockey
    juniper kayak kettle kiwi koala ladder lagoon lantern lemon lentil lily limpet
    linen lizard lobster locket lotus magnet mango maple marble meadow melon
    meteor mitten monsoon mosaic muffin mustard napkin nectar needle noodle nugget
    oasis ocean olive onion orbit orchid otter oyster paddle pagoda pancake panda
    paper parrot peach pebble pelican pepper pickle pigeon pillow pine pirate planet
    plum pocket pony poppy potato prairie pretzel puffin pumpkin puppet purple
    quartz quilt rabbit radish raven ribbon river robin rocket rooster saddle salmon
    sausage scarf sesame shadow shovel silver sketch sleigh socket spinach sponge
    squid summit sunset swan tablet tango teapot thimble thunder tiger
    toffee tomato topaz tractor tulip tunnel turnip turtle velvet violet
    voyage walnut walrus willow window winter wizard yogurt zebra zipper
"""

WORDS: Final[tuple[str, ...]] = tuple(_TEXT.split())
