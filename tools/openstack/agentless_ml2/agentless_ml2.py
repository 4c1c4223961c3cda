"""ML2 mechanism driver that binds any port on the first segment and marks it ACTIVE.

The local test cloud runs no L2 agent (no Open vSwitch, no Linux bridge), so the stock drivers
would leave ports in binding_failed and nova would refuse them. Nova's fake compute driver plugs
nothing, so an OVS binding that nothing implements is all it needs.
"""

from __future__ import annotations

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class AgentlessMechanismDriver(api.MechanismDriver):
    def initialize(self) -> None:
        pass

    def bind_port(self, context: api.PortContext) -> None:
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                portbindings.VIF_TYPE_OVS,
                {portbindings.CAP_PORT_FILTER: True},
                status=constants.PORT_STATUS_ACTIVE,
            )
            return
