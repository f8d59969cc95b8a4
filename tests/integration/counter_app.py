"""A minimal Faust app for the smoke test: counts messages per key in a table.

Each count is also sent to an output topic, so a test can see that after a
restart with an empty local store the table was restored from its changelog
(the count goes on from where it was instead of starting again at 1).
Topic names come from the environment so every test run uses fresh ones.
"""

import os

import faust


def create_app() -> faust.App:
    name = os.environ["COUNTER_APP_ID"]
    app = faust.App(
        name,
        broker=os.environ["COUNTER_BROKER"],
        store="memory://",
        topic_partitions=1,
        web_enabled=False,
        # A killed worker holds its partitions until its session times out.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    source = app.topic(os.environ["COUNTER_SOURCE"], key_serializer="raw", value_serializer="raw")
    counts_topic = app.topic(os.environ["COUNTER_OUTPUT"], key_serializer="raw", value_serializer="raw")
    # A table's changelog codecs come from key_type/value_type (bytes means raw);
    # a schema= argument is not used when the table is restored.
    counts = app.Table("counts", default=int, partitions=1, key_type=bytes, value_type=int)

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for key, _ in stream.items():
            counts[key] += 1
            await counts_topic.send(key=key, value=str(counts[key]).encode())

    return app


app = create_app()

if __name__ == "__main__":
    app.main()
