"""Building a world: its data (from `tokenreward.world`), tokenizer, SFT policy and reward model
(with `tokenreward.trainers`), and its measurements. It sits above both: the world itself (the
families, the oracle, the `World` reader) is below the trainers, which grade with it.

    from tokenreward.worldbuild.build import build_world
    world = build_world("/tmp/world", size="small", seed=0)
"""
