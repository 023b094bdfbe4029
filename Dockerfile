# The keyserver image: web (gunicorn), worker and beat run from it.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/var/lib/keyserver
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libldap2-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-ldap.txt ./
RUN pip install --no-cache-dir -r requirements.txt -r requirements-ldap.txt
COPY . .
RUN useradd --system --home /var/lib/keyserver keyserver && mkdir -p /var/lib/keyserver \
 && chown keyserver /var/lib/keyserver
USER keyserver
EXPOSE 8000
CMD ["gunicorn", "attester.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
