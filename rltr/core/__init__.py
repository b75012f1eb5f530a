"""Token-state mechanics: the state and the ops that change it, the FLOPs model, decision contexts, the one budget
rule, the decider, features."""
