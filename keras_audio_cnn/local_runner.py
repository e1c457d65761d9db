"""The default runner: a run's jobs one after another on this machine's devices."""

from keras_audio_cnn import runner
from keras_audio_cnn.errors import TrainingFailed


class LocalRunner:
    """Trains jobs in this process, in order (see `runner.Runner`).

    A job whose training fails (`TrainingFailed`: a NaN or infinite loss) is
    reported and the next job trains; any other exception is a bug or a problem
    of the machine and stops the run with its traceback.
    """

    def run(self, jobs, train):
        results, to_run = runner.split_finished(jobs)
        failures = {}
        for job in to_run:
            try:
                results[job.key] = train(job)
            except TrainingFailed as error:
                print(f"{job.key}: FAILED: {error}")
                failures[job.key] = str(error)
        return results, failures
