"""Console pages for designing studies: list, create, protocol designer, versions, pilot, launch."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from studyplatform.studies.selectors import studies_visible_to


@login_required
def study_list(request):
    return render(request, "console/study_list.html", {"studies": studies_visible_to(request.user)})
