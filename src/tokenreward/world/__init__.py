"""tokenreward.world"""
