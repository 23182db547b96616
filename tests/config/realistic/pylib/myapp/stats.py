def extra(watcher, arbiter, hook_name, pid, stats, **kwargs):
    stats["extra"] = 1
    return True
