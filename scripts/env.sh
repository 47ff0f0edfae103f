# Sourced by the scripts: where the local development services are.
export TOKENWARDEN__DATABASE__URL="${TOKENWARDEN__DATABASE__URL:-postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden}"
export TOKENWARDEN_TEST_DATABASE_URL="${TOKENWARDEN_TEST_DATABASE_URL:-postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test}"
export TOKENWARDEN_TEST_REDIS_URL="${TOKENWARDEN_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
