"""Very small simulated-dataset sizes for harness tests (keys of bench.simulate.SCALES)."""

TINY_SOUND = {"n_train_stimuli": 24, "n_test_stimuli": 12, "n_train_reps": 1, "n_test_reps": 2, "n_voxels": 60}
TINY_SPEECH = {"n_train_stories": 2, "n_train_clips": 40, "test_story_clips": [12, 12], "n_prompt_clips": 2, "n_voxels": 50}
SMALL_SOUND = {"n_train_stimuli": 8, "n_test_stimuli": 4, "n_train_reps": 1, "n_test_reps": 1, "n_voxels": 40}
