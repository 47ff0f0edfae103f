# Sourced by the scripts: where the local development services are. They
# run on loopback, so without TLS (sslmode=disable; libpq's default, prefer,
# would encrypt every connection the server offers TLS on); TLS has tests of
# its own against servers they start.
export TOKENWARDEN__DATABASE__URL="${TOKENWARDEN__DATABASE__URL:-postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden?sslmode=disable}"
export TOKENWARDEN_TEST_DATABASE_URL="${TOKENWARDEN_TEST_DATABASE_URL:-postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test?sslmode=disable}"
export TOKENWARDEN_TEST_REDIS_URL="${TOKENWARDEN_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
