"""The event bus: publishing typed events and receiving them as Pub/Sub pushes."""

from mlops.bus.publisher import EventBus, PubSubEventBus, new_envelope, topic_path
from mlops.bus.push import PermanentError, PushEndpoint, Route, create_push_app

__all__ = ["EventBus", "PermanentError", "PubSubEventBus", "PushEndpoint", "Route", "create_push_app",
           "new_envelope", "topic_path"]
