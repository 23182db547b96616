def check_db(watcher, arbiter, hook_name, **kwargs):
    return True


def report(watcher, arbiter, hook_name, **kwargs):
    return True
