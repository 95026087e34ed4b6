"""Turn the switch on, then stand on the goal. (Reference programs written by hand, not model output.)"""


def switch_on(obs):
    """The switch has been turned on."""
    return obs.switch_on


def on_goal(obs):
    """The switch is on and the agent stands on the goal cell."""
    return obs.switch_on and equal(obs.agent, obs.goal)
