"""The local agent's brain: what a caller's sentence means (`understand`) and what the agent
says and which function it calls next (`dialogue`). Pure and synchronous, like the rest of the
core; the runtime's `boba_runtime.agent.server` only adds the socket and the thread.

A subpackage rather than two more top-level modules because the bridge never uses it: the
top level of `boba_proto` is what every call runs through (wire types, audio, the call state
machine, the menu and the ordering rules), while this is one optional agent built *on* those
(`Menu`'s matcher and `ordering`'s phrasing), and `understand` exists only for `dialogue`.
It may import the rest of `boba_proto`; nothing outside this folder imports `understand`.
"""
