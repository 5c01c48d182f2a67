"""``orch schema``: the grammar as JSON Schema, for editors and other tools."""

from __future__ import annotations

import click


@click.command()
def schema() -> None:
    """Print the TOSCA grammar as a JSON Schema (draft-07).

    \b
    Editors with yaml-language-server validate and complete blueprints as they are typed:
      orch schema > ~/.config/orch/tosca.schema.json
    and put this first line in a blueprint:
      # yaml-language-server: $schema=~/.config/orch/tosca.schema.json
    """
    from orch.tosca.grammar import schema_text

    click.echo(schema_text(), nl=False)
