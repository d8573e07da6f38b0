"""tokenreward.viz"""
