"""What the tests share: builders, throwaway servers (PostgreSQL, RabbitMQ, nginx, containers), checkers."""
