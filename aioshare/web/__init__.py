"""``aioshare web``: a dashboard for share groups and the processes working them.

``aioshare.web.reports`` holds the process reports' side: ``ReportStore`` (an in-memory, bounded
time series of the reports) and ``ReportReader`` (fills a store from the report topic).
"""
