# circusctl's shell completion, written by `circusctl completion` from its command
# table: regenerate it after an upgrade rather than editing it.

_circusctl_where() {
    # the flags of the command line that say where circusd is, for `circusctl list`
    local i
    for ((i = 1; i < ${#_circusctl_words[@]} - 1; i++)); do
        case "${_circusctl_words[i]}" in
            --endpoint|--node|--pool|--curve-key|--server-key|--ssh|--ssh_keyfile|--ssh-keyfile)
                printf '%s\n' "${_circusctl_words[i]}" "${_circusctl_words[i+1]}"; ((i++)) ;;
            --*=*) case "${_circusctl_words[i]%%=*}" in
                       --endpoint|--node|--pool|--curve-key|--server-key|--ssh|--ssh_keyfile|--ssh-keyfile) printf '%s\n' "${_circusctl_words[i]}" ;;
                   esac ;;
        esac
    done
}

_circusctl_ask() {
    # watcher (list) or tool (tools) names from circusd; nothing if it does not answer
    local -a where
    mapfile -t where < <(_circusctl_where)
    local out
    out=$("${_circusctl_words[0]}" "${where[@]}" --timeout 1 --no-color "$1" 2>/dev/null) || return
    if [[ $1 == list ]]; then printf '%s\n' ${out//,/ }; else printf '%s\n' "$out" | cut -d' ' -f1; fi
}

_circusctl() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a _circusctl_words
    read -r -a _circusctl_words <<< "$line"
    [[ -z $line || $line == *[[:space:]] ]] && _circusctl_words+=("")
    local cur="${_circusctl_words[-1]}" prev=""
    (( ${#_circusctl_words[@]} > 1 )) && prev="${_circusctl_words[-2]}"
    local commands="add completion decr dstats get globaloptions help incr ipython keygen kill list listen listsockets nodeinfo numprocesses numwatchers options processes quit reload reloadconfig rename reopen restart rm set signal start stats status stop tail tool tools"
    local gflags="--json --prettify --progress --no-color --no-colour --help --version --endpoint --timeout --ssh --ssh_keyfile --ssh-keyfile --curve-key --server-key --node --pool"
    local gvalued=" --endpoint --timeout --ssh --ssh_keyfile --ssh-keyfile --curve-key --server-key --node --pool "
    local cmd="" npos=0 i w skip=0 flags="" valued="" first=""
    for ((i = 1; i < ${#_circusctl_words[@]} - 1; i++)); do
        w="${_circusctl_words[i]}"
        if (( skip )); then skip=0; continue; fi
        if [[ $w == -* ]]; then
            [[ $w != *=* && ( $gvalued == *" $w "* || " $valued " == *" $w "* ) ]] && skip=1
            continue
        fi
        if [[ -z $cmd ]]; then
            cmd="$w"
            case "$cmd" in
        add) flags="--start --waiting --args --options"; valued="--args --options"; first="watcher" ;;
        completion) flags=""; valued=""; first="shell" ;;
        decr) flags="--waiting"; valued=""; first="watcher" ;;
        dstats) flags=""; valued=""; first="" ;;
        get) flags=""; valued=""; first="watcher" ;;
        globaloptions) flags=""; valued=""; first="" ;;
        help) flags=""; valued=""; first="command" ;;
        incr) flags="--waiting"; valued=""; first="watcher" ;;
        ipython) flags=""; valued=""; first="" ;;
        keygen) flags="--force --dir"; valued="--dir"; first="" ;;
        kill) flags="--waiting --signum --graceful_timeout --graceful-timeout"; valued="--signum --graceful_timeout --graceful-timeout"; first="watcher" ;;
        list) flags=""; valued=""; first="watcher" ;;
        listen) flags=""; valued=""; first="topic" ;;
        listsockets) flags=""; valued=""; first="" ;;
        nodeinfo) flags=""; valued=""; first="" ;;
        numprocesses) flags=""; valued=""; first="watcher" ;;
        numwatchers) flags=""; valued=""; first="" ;;
        options) flags=""; valued=""; first="watcher" ;;
        processes) flags=""; valued=""; first="watcher" ;;
        quit) flags="--keep --waiting"; valued=""; first="" ;;
        reload) flags="--terminate --sequential --waiting --match --batch"; valued="--match --batch"; first="watcher" ;;
        reloadconfig) flags="--waiting --dry_run --dry-run"; valued=""; first="" ;;
        rename) flags=""; valued=""; first="" ;;
        reopen) flags=""; valued=""; first="" ;;
        restart) flags="--waiting --graceful --match --batch"; valued="--match --batch"; first="watcher" ;;
        rm) flags="--nostop --waiting"; valued=""; first="watcher" ;;
        set) flags="--waiting"; valued=""; first="watcher" ;;
        signal) flags="--children --recursive --childpid"; valued="--childpid"; first="watcher" ;;
        start) flags="--waiting --match"; valued="--match"; first="watcher" ;;
        stats) flags="--extended"; valued=""; first="watcher" ;;
        status) flags="--table --plain --match"; valued="--match"; first="watcher" ;;
        stop) flags="--waiting --match"; valued="--match"; first="watcher" ;;
        tail) flags="--follow --stream --lines"; valued="--stream --lines"; first="watcher" ;;
        tool) flags="--waiting --run_id --run-id"; valued="--run_id --run-id"; first="tool" ;;
        tools) flags=""; valued=""; first="" ;;
                *) flags=""; valued=""; first="" ;;
            esac
        else
            ((npos++))
        fi
    done
    COMPREPLY=()
    if (( skip )); then
        case "$cmd:$prev" in
        reload:--match) COMPREPLY=($(compgen -W "glob simple regex" -- "$cur")) ;;
        restart:--match) COMPREPLY=($(compgen -W "glob simple regex" -- "$cur")) ;;
        start:--match) COMPREPLY=($(compgen -W "glob simple regex" -- "$cur")) ;;
        status:--match) COMPREPLY=($(compgen -W "glob simple regex" -- "$cur")) ;;
        stop:--match) COMPREPLY=($(compgen -W "glob simple regex" -- "$cur")) ;;
        tail:--stream) COMPREPLY=($(compgen -W "stdout stderr" -- "$cur")) ;;
            *) [[ $prev == --endpoint || $prev == --pool || $prev == *key* ]] && \
                   COMPREPLY=($(compgen -f -- "$cur")) ;;
        esac
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$gflags $flags" -- "$cur"))
    elif [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    elif (( npos == 0 )); then
        case "$first" in
            watcher) COMPREPLY=($(compgen -W "$(_circusctl_ask list)" -- "$cur")) ;;
            tool) COMPREPLY=($(compgen -W "$(_circusctl_ask tools)" -- "$cur")) ;;
            command) COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
            shell) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
        esac
    fi
    # bash inserts a reply in place of its own current word, which ends at a ':' or '='
    local tail="${cur##*[:=]}"
    if [[ $tail != "$cur" ]]; then
        local head="${cur%"$tail"}" k
        for k in "${!COMPREPLY[@]}"; do COMPREPLY[k]="${COMPREPLY[k]#"$head"}"; done
    fi
}

complete -F _circusctl circusctl
