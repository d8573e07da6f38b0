"""tokenreward.losses"""
