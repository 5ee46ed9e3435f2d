"""Bulk import and export of users and credits, written once for the two processes that offer it: the operator
CLI (`fsg-billing import|export`) and the edge (`/api/admin/import`, `/api/admin/export/*.csv`).

It owns no table and opens no database connection. Auth owns the users and billing the credits, so this is a
coordinator that speaks to both over gRPC with the service token, exactly as the edge does:

    csv_rows    the import file: parsed and checked whole before anything changes
    importer    the import: look the rows' users up, create the new ones, grant initial credits (auth, billing)
    report      what the import did to each row, as JSON (REST, --json) or text (CLI)
    export      users with balances and totals, and the usage log, as CSV
    client      the CLI's channels to auth and billing (the edge has its own, edge/clients.py)
"""
