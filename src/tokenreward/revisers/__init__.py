"""tokenreward.revisers"""
