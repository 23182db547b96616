# circusctl's shell completion, written by `circusctl completion` from its command
# table: regenerate it after an upgrade rather than editing it.

function __circusctl_state
    # prints the command and how many arguments it has so far
    set -l tokens (commandline -opc)
    set -l gvalued --endpoint --timeout --ssh --ssh_keyfile --ssh-keyfile --curve-key --server-key --node --pool
    set -l valued
    set -l cmd
    set -l npos 0
    set -l skip 0
    for w in $tokens[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        if string match -q -- '-*' $w
            if not string match -q -- '*=*' $w; and contains -- $w $gvalued $valued
                set skip 1
            end
            continue
        end
        if test -z "$cmd"
            set cmd $w
            switch $cmd
                case add
                    set valued --args --options
                case keygen
                    set valued --dir
                case kill
                    set valued --signum --graceful_timeout --graceful-timeout
                case reload
                    set valued --match --batch
                case restart
                    set valued --match --batch
                case signal
                    set valued --childpid
                case start
                    set valued --match
                case status
                    set valued --match
                case stop
                    set valued --match
                case tail
                    set valued --stream --lines
                case tool
                    set valued --run_id --run-id
            end
        else
            set npos (math $npos + 1)
        end
    end
    echo $cmd $npos
end

function __circusctl_needs_command
    test (count (string split ' ' -- (__circusctl_state))) -lt 2
end

function __circusctl_first
    # true when the command is one of $argv and its first argument is being typed
    set -l state (string split ' ' -- (__circusctl_state))
    test (count $state) -eq 2; and test $state[2] -eq 0; and contains -- $state[1] $argv
end

function __circusctl_using
    set -l state (string split ' ' -- (__circusctl_state))
    test (count $state) -eq 2; and contains -- $state[1] $argv
end

function __circusctl_ask
    # watcher (list) or tool (tools) names from circusd; nothing if it does not answer
    set -l tokens (commandline -opc)
    set -l where
    set -l i 2
    while test $i -lt (count $tokens)
        if contains -- $tokens[$i] --endpoint --node --pool --curve-key --server-key --ssh --ssh_keyfile --ssh-keyfile
            set where $where $tokens[$i] $tokens[(math $i + 1)]
            set i (math $i + 1)
        end
        set i (math $i + 1)
    end
    set -l out ($tokens[1] $where --timeout 1 --no-color $argv[1] 2>/dev/null)
    or return
    if test $argv[1] = list
        string split , -- $out
    else
        for l in $out
            string split -f1 ' ' -- $l
        end
    end
end

complete -c circusctl -f
complete -c circusctl -n __circusctl_needs_command -a add -d 'Add a watcher'
complete -c circusctl -n __circusctl_needs_command -a completion -d 'Print the shell completion script for bash, zsh or fish'
complete -c circusctl -n __circusctl_needs_command -a decr -d 'Remove processes from a watcher (the oldest go first)'
complete -c circusctl -n __circusctl_needs_command -a dstats -d 'circusd\'s own statistics'
complete -c circusctl -n __circusctl_needs_command -a get -d 'Get watcher options'
complete -c circusctl -n __circusctl_needs_command -a globaloptions -d 'circusd\'s options'
complete -c circusctl -n __circusctl_needs_command -a help -d 'Show the help of circusctl or of one command'
complete -c circusctl -n __circusctl_needs_command -a incr -d 'Add processes to a watcher'
complete -c circusctl -n __circusctl_needs_command -a ipython -d 'Not supported (0.19\'s embedded IPython)'
complete -c circusctl -n __circusctl_needs_command -a keygen -d 'Write a CURVE key pair, NAME.key and NAME.key_secret (no daemon contacted)'
complete -c circusctl -n __circusctl_needs_command -a kill -d 'Stop processes with the stop policy (respawned unless the watcher stops)'
complete -c circusctl -n __circusctl_needs_command -a list -d 'Watchers, or the pids of one watcher'
complete -c circusctl -n __circusctl_needs_command -a listen -d 'Print events from the pubsub endpoint (topic prefixes, e.g. watcher.web.)'
complete -c circusctl -n __circusctl_needs_command -a listsockets -d 'The sockets circusd bound'
complete -c circusctl -n __circusctl_needs_command -a nodeinfo -d 'This node: name, load, memory, watchers and processes'
complete -c circusctl -n __circusctl_needs_command -a numprocesses -d 'Number of running processes'
complete -c circusctl -n __circusctl_needs_command -a numwatchers -d 'Number of watchers'
complete -c circusctl -n __circusctl_needs_command -a options -d 'All options of a watcher'
complete -c circusctl -n __circusctl_needs_command -a processes -d 'Each watcher\'s processes with their state, readiness and restarts'
complete -c circusctl -n __circusctl_needs_command -a quit -d 'Stop every watcher and exit'
complete -c circusctl -n __circusctl_needs_command -a reload -d 'Reload watchers: new processes first, then the old ones stop'
complete -c circusctl -n __circusctl_needs_command -a reloadconfig -d 'Re-read the configuration file and apply what changed'
complete -c circusctl -n __circusctl_needs_command -a rename -d 'Rename this node (in memory only)'
complete -c circusctl -n __circusctl_needs_command -a reopen -d 'Reopen log files and stream files (as SIGUSR1)'
complete -c circusctl -n __circusctl_needs_command -a restart -d 'Restart watchers: stop then start (all watchers without a name)'
complete -c circusctl -n __circusctl_needs_command -a rm -d 'Remove a watcher'
complete -c circusctl -n __circusctl_needs_command -a set -d 'Set watcher options'
complete -c circusctl -n __circusctl_needs_command -a signal -d 'Send a signal to processes'
complete -c circusctl -n __circusctl_needs_command -a start -d 'Start watchers (all autostart watchers without a name)'
complete -c circusctl -n __circusctl_needs_command -a stats -d 'Process statistics'
complete -c circusctl -n __circusctl_needs_command -a status -d 'State of one watcher or of all'
complete -c circusctl -n __circusctl_needs_command -a stop -d 'Stop watchers (all without a name; circusd keeps running)'
complete -c circusctl -n __circusctl_needs_command -a tail -d 'The last lines a watcher\'s processes wrote (every watcher\'s, without a name)'
complete -c circusctl -n __circusctl_needs_command -a tool -d 'Run an operator tool on this node'
complete -c circusctl -n __circusctl_needs_command -a tools -d 'The operator tools of this node ([tool:NAME] sections)'
complete -c circusctl -l json -d 'print the raw JSON reply'
complete -c circusctl -l prettify -d 'with --json: indented, sorted keys'
complete -c circusctl -l progress -d 'with --waiting: print progress lines on stderr (default: when stder...'
complete -c circusctl -l no-color -d 'no colours (also: $NO_COLOR set, or stdout not a terminal)'
complete -c circusctl -l no-colour -d 'no colours (also: $NO_COLOR set, or stdout not a terminal)'
complete -c circusctl -l help -d ''
complete -c circusctl -l version -d ''
complete -c circusctl -l endpoint -r -d 'control endpoint (default: $CIRCUSCTL_ENDPOINT or tcp://127.0.0.1:5...'
complete -c circusctl -l timeout -r -d 'seconds to wait for each reply (default: 5)'
complete -c circusctl -l ssh -r -d 'ssh server, as user@host:port'
complete -c circusctl -l ssh_keyfile -r -d 'ssh key file'
complete -c circusctl -l ssh-keyfile -r -d 'ssh key file'
complete -c circusctl -l curve-key -r -d 'CURVE: this client\'s key pair, a NAME.key_secret file (default: $CI...'
complete -c circusctl -l server-key -r -d 'CURVE: the server\'s public key, its .key file (default: $CIRCUSCTL_...'
complete -c circusctl -l node -r -d 'run the command on this node of the pool file (its endpoint; for li...'
complete -c circusctl -l pool -r -d 'the pool file for --node (default: $CIRCUSMETA_POOL, ~/.config/circ...'
complete -c circusctl -n '__circusctl_using add' -l start -d 'start the watcher at once'
complete -c circusctl -n '__circusctl_using add' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using add' -l args -x -d 'arguments (string or list)'
complete -c circusctl -n '__circusctl_using add' -l options -x -d 'watcher options, as in the INI file, with JSON types'
complete -c circusctl -n '__circusctl_using decr' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using incr' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using keygen' -l force -d 'replace existing key files of that name'
complete -c circusctl -n '__circusctl_using keygen' -l dir -x -d 'the directory to write the two files in (default: the current direc...'
complete -c circusctl -n '__circusctl_using kill' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using kill' -l signum -x -d 'signal: number or name, with or without SIG, any case'
complete -c circusctl -n '__circusctl_using kill' -l graceful_timeout -x -d 'seconds before SIGKILL (default: the watcher\'s)'
complete -c circusctl -n '__circusctl_using kill' -l graceful-timeout -x -d 'seconds before SIGKILL (default: the watcher\'s)'
complete -c circusctl -n '__circusctl_using quit' -l keep -d 'exit but leave every process running, for the next circusd to re-ad...'
complete -c circusctl -n '__circusctl_using quit' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using reload' -l terminate -d 'stop the processes, then start new ones (not graceful)'
complete -c circusctl -n '__circusctl_using reload' -l sequential -d 'replace one process at a time'
complete -c circusctl -n '__circusctl_using reload' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using reload' -l match -x -a 'glob simple regex' -d 'how <name> matches watchers: glob (default), simple or regex'
complete -c circusctl -n '__circusctl_using reload' -l batch -x -d 'processes replaced per step, N or \'N%\' (restart --graceful: 1; relo...'
complete -c circusctl -n '__circusctl_using reloadconfig' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using reloadconfig' -l dry_run -d 'only return the plan'
complete -c circusctl -n '__circusctl_using reloadconfig' -l dry-run -d 'only return the plan'
complete -c circusctl -n '__circusctl_using restart' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using restart' -l graceful -d 'rolling: start replacements, wait until they are ready, then stop t...'
complete -c circusctl -n '__circusctl_using restart' -l match -x -a 'glob simple regex' -d 'how <name> matches watchers: glob (default), simple or regex'
complete -c circusctl -n '__circusctl_using restart' -l batch -x -d 'processes replaced per step, N or \'N%\' (restart --graceful: 1; relo...'
complete -c circusctl -n '__circusctl_using rm' -l nostop -d 'forget the processes without stopping them'
complete -c circusctl -n '__circusctl_using rm' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using set' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using signal' -l children -d 'signal the children instead'
complete -c circusctl -n '__circusctl_using signal' -l recursive -d 'signal the process and all its descendants'
complete -c circusctl -n '__circusctl_using signal' -l childpid -x -d 'a child of pid'
complete -c circusctl -n '__circusctl_using start' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using start' -l match -x -a 'glob simple regex' -d 'how <name> matches watchers: glob (default), simple or regex'
complete -c circusctl -n '__circusctl_using stats' -l extended -d 'add extended stats'
complete -c circusctl -n '__circusctl_using status' -l table -d 'the table (pids, uptime, restarts), even when stdout is not a terminal'
complete -c circusctl -n '__circusctl_using status' -l plain -d '0.19\'s \'name: state\' lines, even on a terminal'
complete -c circusctl -n '__circusctl_using status' -l match -x -a 'glob simple regex' -d 'how <name> matches watchers: glob (default), simple or regex'
complete -c circusctl -n '__circusctl_using stop' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using stop' -l match -x -a 'glob simple regex' -d 'how <name> matches watchers: glob (default), simple or regex'
complete -c circusctl -n '__circusctl_using tail' -l follow -d 'then print new lines as they are written, until interrupted'
complete -c circusctl -n '__circusctl_using tail' -l stream -x -a 'stdout stderr' -d 'only stdout or only stderr (default: both)'
complete -c circusctl -n '__circusctl_using tail' -l lines -x -d 'how many lines, at most 1000 (default: 10)'
complete -c circusctl -n '__circusctl_using tool' -l waiting -d 'wait until it is done: fail with the reason if it did not work'
complete -c circusctl -n '__circusctl_using tool' -l run_id -x -d 'names this run in the events (1 to 64 letters, digits, _ or -); def...'
complete -c circusctl -n '__circusctl_using tool' -l run-id -x -d 'names this run in the events (1 to 64 letters, digits, _ or -); def...'
complete -c circusctl -n '__circusctl_first help' -a 'add completion decr dstats get globaloptions help incr ipython keygen kill list listen listsockets nodeinfo numprocesses numwatchers options processes quit reload reloadconfig rename reopen restart rm set signal start stats status stop tail tool tools'
complete -c circusctl -n '__circusctl_first completion' -a 'bash zsh fish'
complete -c circusctl -n '__circusctl_first tool' -a '(__circusctl_ask tools)'
complete -c circusctl -n '__circusctl_first add decr get incr kill list numprocesses options processes reload restart rm set signal start stats status stop tail' -a '(__circusctl_ask list)'
