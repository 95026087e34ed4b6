"""Turn the switch on, then stand on the goal ring. (Reference programs written by hand, not model output.)"""


def switch_on(obs):
    """The switch is green."""
    return present(obs.frame, SWITCH_ON_RGB)


def on_goal(obs):
    """The switch is green and the blue agent stands inside the white goal ring."""
    return present(obs.frame, SWITCH_ON_RGB) and colours_touch(obs.frame, AGENT_RGB, GOAL_RGB)
