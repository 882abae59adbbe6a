"""completion: shell completion scripts for bash, zsh and fish, generated from the parser itself (so they
cannot drift from the commands and flags)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_OK
from .help import examples

NAMES = ("apptopology", "kubectl-apptopology")
FILE_METAVARS = {"FILE", "PATH", "TOPOLOGY"}


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _takes_file(action: argparse.Action) -> bool:
    return action.dest == "filename" or str(action.metavar) in FILE_METAVARS


def _help(action: argparse.Action | argparse.ArgumentParser | None) -> str:
    text = (getattr(action, "help", None) or getattr(action, "description", None) or "").split(";")[0]
    return text.replace("'", "").replace("%", "%%")[:70]


def bash(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    lines = [
        "# apptopology completion for bash: source <(apptopology completion bash)",
        "_apptopology() {",
        '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" i',
        "  for ((i = 1; i < COMP_CWORD; i++)); do",
        '    case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac',
        "  done",
        '  if [[ -z "$cmd" ]]; then',
        f'    COMPREPLY=($(compgen -W "{" ".join(commands)} --help --version" -- "$cur")); return',
        "  fi",
        '  case "$cmd $prev" in',
    ]
    for name, sub in commands.items():
        for action in _options(sub):
            flags = "|".join(f"{name}\\ {o}" for o in action.option_strings)
            if action.choices:
                words = " ".join(str(c) for c in action.choices)
                lines.append(f'    {flags}) COMPREPLY=($(compgen -W "{words}" -- "$cur")); return ;;')
            elif _takes_file(action):
                lines.append(f'    {flags}) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames; return ;;')
            elif action.nargs != 0:
                lines.append(f"    {flags}) return ;;")
    lines += ["  esac", '  case "$cmd" in']
    for name, sub in commands.items():
        words = " ".join(o for a in _options(sub) for o in a.option_strings)
        lines.append(f'    {name}) COMPREPLY=($(compgen -W "{words}" -- "$cur")) ;;')
    lines += ["  esac", "}", f"complete -o default -F _apptopology {' '.join(NAMES)}", ""]
    return "\n".join(lines)


def zsh(parser: argparse.ArgumentParser) -> str:
    """zsh reads the bash completion through its bashcompinit layer (shipped with zsh)."""
    return (
        f"#compdef {' '.join(NAMES)}\n"
        "# apptopology completion for zsh: source <(apptopology completion zsh)\n"
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash(parser)
    )


def fish(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    lines = ["# apptopology completion for fish: apptopology completion fish | source"]
    for prog in NAMES:
        lines.append(f"complete -c {prog} -f")
        for name, sub in commands.items():
            lines.append(f"complete -c {prog} -n __fish_use_subcommand -a {name} -d '{_help(sub)}'")
        for name, sub in commands.items():
            for action in _options(sub):
                parts = [f"complete -c {prog} -n '__fish_seen_subcommand_from {name}'"]
                for option in action.option_strings:
                    parts.append(f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}")
                if action.choices:
                    parts.append(f"-x -a '{' '.join(str(c) for c in action.choices)}'")
                elif _takes_file(action):
                    parts.append("-r -F")
                elif action.nargs != 0:
                    parts.append("-x")
                parts.append(f"-d '{_help(action)}'")
                lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write({"bash": bash, "zsh": zsh, "fish": fish}[args.shell](args.parser))
    return EXIT_OK


def register(sub: Any, prog: str) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print the completion script of a shell: commands, flags, their choices and files.",
        epilog=examples(
            prog,
            ("completion bash > /etc/bash_completion.d/apptopology", "bash, for every session"),
            ("completion zsh > ~/.apptopology.zsh && echo 'source ~/.apptopology.zsh' >> ~/.zshrc", "zsh"),
            ("completion fish > ~/.config/fish/completions/apptopology.fish", "fish"),
        ),
    )
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    p.set_defaults(func=cmd_completion)
