from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_spec
short_description: Validate and normalize a trove.dbaas cluster document
description:
  - Checks a cluster document (C(apiVersion=trove.dbaas/v1), C(kind=Cluster)) against the collection's
    JSON Schema C(schemas/cluster-v1.json) and against the rules a schema cannot express, such as which
    engine and topology pairs are available, placement counts, and references between users and databases.
  - Returns the document with every default filled in, so later tasks can rely on every key being present.
  - Reports every problem found, one per line, each starting with the dotted path of the offending field.
  - Runs on the controller only and reads nothing from the managed hosts.
  - Requires the Python library C(jsonschema) on the controller.
version_added: 0.1.0
options:
  definition:
    description:
      - The whole cluster document.
      - Mutually exclusive with O(src); one of them is required.
    type: raw
  src:
    description:
      - Path to a YAML or JSON file on the controller holding the cluster document.
      - A relative path is taken from the working directory when the file is there; otherwise it is searched
        like other controller-side files, for example in the role or playbook C(files/) directory.
        Vault-encrypted files are decrypted.
      - Mutually exclusive with O(definition); one of them is required.
    type: str
notes:
  - Passwords are never part of the document; a C(password) key under O(definition) C(spec.users) is refused.
    They are generated and kept in the secrets directory.
  - Only the C(container) placement backend and the PostgreSQL engine with the C(standalone) and C(replicated)
    topologies are available in this version; the others are valid in the schema but refused as not available yet.
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.actiongroups
  - action_common_attributes.conn
  - action_common_attributes.flow
attributes:
  action:
    support: full
  action_group:
    support: full
    membership:
      - trove.dbaas.cluster
  async:
    support: none
  become:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The module only reads, so it behaves the same in check mode.
  diff_mode:
    support: none
  connection:
    support: none
  delegation:
    support: none
    details: Runs on the controller whatever the delegation.
  platform:
    support: full
    platforms: all
requirements:
  - jsonschema (on the controller)
author:
  - trove.dbaas maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Validate a cluster kept in a file next to the playbook
  trove.dbaas.cluster_spec:
    src: clusters/pg-demo.yml
  register: spec

- name: Use a normalized value
  ansible.builtin.debug:
    msg: "{{ spec.cluster.spec.endpoint.port }}"

- name: Validate a cluster written inline
  trove.dbaas.cluster_spec:
    definition:
      apiVersion: trove.dbaas/v1
      kind: Cluster
      metadata:
        name: pg-demo
      spec:
        engine: postgresql
        topology: replicated
        members: 3
        databases:
          - name: appdb
            owner: app
        users:
          - name: app
            grants:
              - database: appdb
                access: readwrite
  register: spec
"""

RETURN = r"""
cluster:
  description:
    - The document with every default filled in.
    - Engine-specific defaults are applied too, for example C(spec.version) and C(spec.endpoint.port).
    - Each C(spec.placement) entry has its C(count) and the options object of its own backend with defaults.
  returned: success
  type: dict
  sample:
    apiVersion: trove.dbaas/v1
    kind: Cluster
    metadata:
      name: pg-demo
      labels: {}
    spec:
      engine: postgresql
      version: "15"
      topology: standalone
      members: 1
      placement:
        - backend: container
          count: 1
          container:
            host: localhost
            cpus: 1.0
            memory: 1g
            network: trove
            subnet: 10.89.0.0/24
      storage:
        size: 10Gi
      replication:
        mode: async
        syncCount: 1
      tls:
        enabled: true
      parameters: {}
      databases: []
      users: []
      backup:
        enabled: false
        schedule: daily
        retention:
          full: 2
        repository:
          type: member
          path: /srv/data/backup
      endpoint:
        port: 5432
        allowedCidrs:
          - 0.0.0.0/0
errors:
  description:
    - Every problem found, sorted and without duplicates.
    - "Each is C(<path>: <what is wrong>); the path is dotted with list indexes, like C(spec.placement[0].backend)."
  returned: failure
  type: list
  elements: str
  sample:
    - "spec.members: 0 is less than the minimum of 1"
    - "spec.placement[0].backend: 'docker' is not one of ['container', 'ironic', 'nova']"
msg:
  description: The problems from RV(errors), one per line.
  returned: failure
  type: str
  sample: "spec.members: 0 is less than the minimum of 1"
"""
