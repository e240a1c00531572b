"""The pure core: what doxa decides, with no I/O, no clock and no module state.

Merge folds an extraction's proposals into a user's model (reinforce, create, contradict,
supersede), confidence turns evidence into a number, similarity finds duplicates,
injection screens event text that tries to steer the model, trajectories read how records
move across users. The engine calls it between the LLM and the store; being pure, a
re-merge after a lost commit race costs no new LLM call and gives the same answer.
"""
