"""State hooks, run names from parameters, log_prints and tags."""

from taskloom import flow, get_run_logger, tags, task


def announce(task, task_run, state):
    get_run_logger().info("%s finished %s", task_run.name, state.name)


@task(task_run_name="fetch-{city}", on_completion=[announce], log_prints=True)
def fetch(city: str) -> str:
    print(f"fetching {city}")          # becomes an INFO line of the task run
    return city.upper()


def alert(flow, flow_run, state):
    print(f"flow run {flow_run.name} failed: {state.message}")


@flow(flow_run_name="weather-{region}", on_failure=[alert])
def weather(region: str) -> list[str]:
    with tags("weather", region):
        futures = [fetch.submit(city) for city in ["oslo", "bergen"]]
    return [f.result() for f in futures]


if __name__ == "__main__":
    print(weather("norway"))
